#!/usr/bin/env bash
# The "hairpin lab": the smallest network in which VEPA can be observed.
#
#   PREFIX-sw                 PREFIX-br                          PREFIX-ext
#   mvtup0  <--veth-->  mvtup0-br --[br0]-- ext0-br  <--veth-->  ext0 (02:00:00:00:ee:01)
#   (dpdk-macvtap's uplink,    (the "adjacent bridge" of 802.1Qbg:
#    opened by net_af_packet)   hairpin on mvtup0-br reflects guest-to-guest frames)
#
# Source this file and call the functions (as root):
#   . dpdk-config/lab.sh; lab_up mvt; lab_hairpin mvt on; ...; lab_down mvt
# Each lab lives entirely in its own three namespaces, so interface names can stay fixed
# and only PREFIX has to differ between labs that exist at the same time.

LAB_EXT_MAC=02:00:00:00:ee:01

# Runs a command in a namespace; `ip -n` does not cover sysctl or bridge.
_lab_in() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# Creates a namespace that will stay silent: with IPv6 on, every link that comes up sends
# router solicitations and MLD reports, which would show up on the uplink as frames the tests
# never sent. `default` must be set before the links exist, since links copy it when created.
_lab_ns() {
    local ns=$1
    ip netns add "$ns"
    _lab_in "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
}

lab_up() {
    local p=${1:?usage: lab_up PREFIX}
    # Leftovers of an interrupted run would make `ip netns add` fail halfway; start clean.
    lab_down "$p"
    _lab_ns "$p-sw"
    _lab_ns "$p-br"
    _lab_ns "$p-ext"

    # Creating each pair inside its namespace (peer moved on creation) never touches the root
    # namespace, so a lab cannot collide with the host's interfaces or another lab's.
    ip -n "$p-sw" link add mvtup0 type veth peer name mvtup0-br netns "$p-br"
    ip -n "$p-ext" link add ext0 address "$LAB_EXT_MAC" type veth peer name ext0-br netns "$p-br"

    # STP would hold ports in listening/learning for forward_delay and drop what the tests send;
    # snooping would filter multicast by IGMP/MLD state the guests never create.
    ip -n "$p-br" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    ip -n "$p-br" link set mvtup0-br master br0
    ip -n "$p-br" link set ext0-br master br0

    ip -n "$p-br" link set br0 up
    ip -n "$p-br" link set mvtup0-br up
    ip -n "$p-br" link set ext0-br up
    ip -n "$p-sw" link set mvtup0 up
    ip -n "$p-ext" link set ext0 up
    _lab_wait_carrier "$p-sw" mvtup0
    _lab_wait_carrier "$p-ext" ext0
}

# veth carrier comes up asynchronously after `link set up`; a switch that opens the uplink
# before that may see it down and report it so. Give it up to 5 s.
_lab_wait_carrier() {
    local ns=$1 dev=$2
    for _ in $(seq 50); do
        if [ "$(_lab_in "$ns" cat "/sys/class/net/$dev/carrier" 2>/dev/null)" = 1 ]; then
            return 0
        fi
        sleep 0.1
    done
    echo "lab: $dev in $ns has no carrier after 5 s" >&2
    return 1
}

# on: the bridge sends frames back out of the port they came in on, which is what lets two
# guests behind one VEPA uplink reach each other. off: they cannot (802.1Qbg isolation).
lab_hairpin() {
    local p=${1:?usage: lab_hairpin PREFIX on|off} mode=${2:?usage: lab_hairpin PREFIX on|off}
    case $mode in
        on | off) ;;
        *) echo "lab_hairpin: mode must be on or off, not '$mode'" >&2; return 2 ;;
    esac
    _lab_in "$p-br" bridge link set dev mvtup0-br hairpin "$mode"
}

# Deleting a namespace deletes the veths in it, and with one end gone the peer goes too.
lab_down() {
    local p=${1:?usage: lab_down PREFIX} ns
    for ns in "$p-sw" "$p-br" "$p-ext"; do
        if [ -e "/var/run/netns/$ns" ]; then
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}

# Prints the lab's links, for looking at it by hand.
lab_show() {
    local p=${1:?usage: lab_show PREFIX} ns
    for ns in "$p-sw" "$p-br" "$p-ext"; do
        echo "== $ns"
        ip -n "$ns" -br link
    done
    _lab_in "$p-br" bridge -d link show dev mvtup0-br | grep -o 'hairpin [a-z]*' || true
}
