#!/usr/bin/env bash
# What a net_af_packet uplink carries at saturation with the switch's interface watch (the
# default: a worker blocks through lulls, woken by a packet socket on the uplink's kernel
# interface, which it lets go once its traffic reaches 10,000 frames a second over a second)
# and without it (`--idle-block-after 0`: timed sleeps only, no watch), runs alternating.
#
#   bash bench/afpacket.sh [ROUNDS] [SECONDS]      (default 6 rounds of 5 s per variant)
#
# A veth pair: dpdk-testpmd txonly (64 B frames to a guest's MAC, on core 0) writes into one
# end through its own net_af_packet port; the switch (worker on core 1) reads the other end.
# The rate is the switch's uplink rx_packets over the window, from 2 s after the generator
# started (the watch is let go by then). No guest is attached: the frames are counted and
# dropped as guest_down, which is not what is measured. MACVTAP_BIN=PATH measures another
# build. Writes bench/results/<date>-<host>-afpacket.md. As root.
set -euo pipefail

cd "$(dirname "$0")/.."
ROUNDS=${1:-6}
SECS=${2:-5}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
export PATH=$HOME/.cargo/bin:$PATH
cargo build --release -q --bin dpdk-macvtap --bin dpdk-macvtapctl
BIN=${MACVTAP_BIN:-$TARGET/release/dpdk-macvtap}
CTL=$TARGET/release/dpdk-macvtapctl
WORK=$(mktemp -d /tmp/mvt-afpacket.XXXXXX)
UP=mvtafu$$
WIRE=mvtafw$$
SW= GEN=
cleanup() {
    [ -n "$GEN" ] && kill "$GEN" 2>/dev/null || true
    [ -n "$SW" ] && kill -INT "$SW" 2>/dev/null || true
    wait 2>/dev/null || true
    ip link del "$UP" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ip link add "$UP" type veth peer name "$WIRE"
for e in "$UP" "$WIRE"; do
    # No IPv6 (where the host has it): its neighbour and router messages would be frames of
    # their own.
    [ -e "/proc/sys/net/ipv6/conf/$e/disable_ipv6" ] && echo 1 >"/proc/sys/net/ipv6/conf/$e/disable_ipv6"
    ip link set "$e" up
done
cat >"$WORK/guests.toml" <<EOF
[[guest]]
name = "vm1"
mac = "52:54:00:00:00:01"
socket = "$WORK/vm1.sock"
EOF

rx_packets() {
    "$CTL" --control "$WORK/control.sock" --json stats | python3 -c 'import json, sys; print(json.load(sys.stdin)["uplink"]["rx_packets"])'
}

# One measurement: frames per second the switch took from the uplink, with switch options
# "$@", into RATE. (Not in a subshell: on an error, the EXIT trap stops what it started.)
n=0
RATE=
one() {
    n=$((n + 1))
    rm -f "$WORK/vm1.sock" "$WORK/control.sock"
    taskset -c 1 "$BIN" -l 0-1 --no-huge -m 1024 --no-pci --file-prefix mvtafs$$-$n --vdev "net_af_packet0,iface=$UP" \
        -- --port 0 --guests "$WORK/guests.toml" --stats-interval 0 --no-hairpin-check --control "$WORK/control.sock" "$@" >"$WORK/switch.log" 2>&1 &
    SW=$!
    for _ in $(seq 100); do [ -S "$WORK/control.sock" ] && break; sleep 0.1; done
    [ -S "$WORK/control.sock" ] || { cat "$WORK/switch.log" >&2; exit 1; }
    taskset -c 0 dpdk-testpmd --lcores 0@0,1@0 --no-huge -m 1024 --no-pci --file-prefix mvtafg$$-$n --vdev "net_af_packet0,iface=$WIRE" \
        -- --forward-mode=txonly --eth-peer=0,52:54:00:00:00:01 --txpkts=64 --total-num-mbufs=8192 --stats-period 1 -a >"$WORK/gen.log" 2>&1 </dev/null &
    GEN=$!
    sleep 2
    kill -0 "$GEN" 2>/dev/null || { echo "the generator exited:" >&2; tail -5 "$WORK/gen.log" >&2; exit 1; }
    local a b
    a=$(rx_packets)
    sleep "$SECS"
    b=$(rx_packets)
    [ "$b" -gt "$a" ] || { echo "no frame came in $SECS s; generator:" >&2; tail -5 "$WORK/gen.log" >&2; tail -5 "$WORK/switch.log" >&2; exit 1; }
    kill "$GEN"; wait "$GEN" 2>/dev/null || true; GEN=
    kill -INT "$SW"; wait "$SW" 2>/dev/null || true; SW=
    RATE=$(((b - a) / SECS))
}

watch=() plain=()
for r in $(seq "$ROUNDS"); do
    one
    w=$RATE
    one --idle-block-after 0
    p=$RATE
    watch+=("$w") plain+=("$p")
    echo "round $r: with the watch $w frames/s, without $p frames/s" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : int((v[NR/2]+v[NR/2+1])/2)}'; }
mw=$(median "${watch[@]}") mp=$(median "${plain[@]}")
out=bench/results/$(date +%Y-%m-%d-%H%M)-$(hostname | tr . _)-afpacket.md
{
    echo "# net_af_packet uplink at saturation, with and without the interface watch: $(date +%Y-%m-%d-%H%M)"
    echo
    echo "\`bash bench/afpacket.sh $ROUNDS $SECS\`, binary \`$BIN\`. dpdk-testpmd txonly (64 B, core 0) -> veth -> the switch's net_af_packet uplink (worker on core 1); frames per second the switch took from the uplink over ${SECS} s, from 2 s after the generator started; rounds alternate the variants."
    echo
    echo "| round | default (watch, let go while traffic is dense) | \`--idle-block-after 0\` (no watch) |"
    echo "|---:|---:|---:|"
    for i in "${!watch[@]}"; do echo "| $((i + 1)) | ${watch[$i]} | ${plain[$i]} |"; done
    echo "| median | **$mw** | **$mp** |"
} >"$out"
echo "wrote $out (median $mw with the watch, $mp without)"
