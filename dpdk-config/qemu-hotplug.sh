#!/usr/bin/env bash
# Hot-plugs a second NIC into a running QEMU VM through a guest added to a running
# dpdk-macvtap, and takes it away again, with one command (as root, Debian 12):
#   bash dpdk-config/qemu-hotplug.sh
#
#   PREFIX-sw: dpdk-macvtap --control DIR/control.sock, uplink mvtup0   <- vm1.sock, vm1b.sock ->  QEMU vm1
#   PREFIX-br: Linux bridge br0 (hairpin on)
#   PREFIX-ext: the external host, ext0 = 10.77.0.1/24 and 10.78.0.1/24
#
#   1. lab, switch (one guest vm1), one VM (TCG) on vm1 with a QMP socket and an empty PCIe
#      root port (hp1) to plug into
#   2. the VM pings 10.77.0.1 through vm1 (eth0 = 10.77.0.11/24)
#   3. dpdk-macvtapctl guest-add vm1b, then over QMP: chardev-add (vm1b's socket), netdev_add
#      (vhost-user), device_add (virtio-net-pci on hp1, vm1b's MAC, vectors=0)
#   4. the VM's init finds the new interface by its MAC, gives it 10.78.0.11/24 and pings
#      10.78.0.1 through it; guest-list and stats vm1b show frames went through vm1b
#   5. device_del (until DEVICE_DELETED), netdev_del, chardev-remove, guest-del vm1b; vm1 still
#      pings 10.77.0.1
#   6. the VM powers off, the switch stops: exit status 0 and `mempool in use at exit: 0`
#
# The VM is the one qemu-vm.sh boots (Debian kernel, busybox initramfs, commands over the serial
# console; see qemu-common.sh). Exits 0 only if every step held; prints PASS/FAIL per step.
# Logs stay in $DIR (switch.log, vm1.console, qmp-*.log); processes, namespaces, sockets and
# DPDK runtime files are removed on exit, on failure too.
#
#   PREFIX=qhp   DIR=/tmp/qemu-hotplug   VM_MEM=512 (MB)   BOOT_TIMEOUT=300 (s; TCG is slow)
#   KERNEL_DIR=/tmp/qemu-vm/root (the guest kernel, shared with qemu-vm.sh's cache)
#   SKIP_BUILD=1   CLEAN_CACHE=1 (re-fetch the kernel)   ACCEL=tcg (default; kvm:tcg tries KVM)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ME=qemu-hotplug
PREFIX=${PREFIX:-qhp}
DIR=${DIR:-/tmp/qemu-hotplug}
VM_MEM=${VM_MEM:-512}
FILE_PREFIX=qemuhp
KERNEL_DIR=${KERNEL_DIR:-/tmp/qemu-vm/root}
VM=vm1
VM_MAC=52:54:00:00:00:01
VM_IP=10.77.0.11
EXT_IP=10.77.0.1
NEW=vm1b
NEW_MAC=52:54:00:00:00:1b
NEW_IP=10.78.0.11
NEW_EXT_IP=10.78.0.1
# QEMU ids of the hot-plugged parts, and the root port it goes into.
HP_PORT=hp1 HP_CHR=hpchr1 HP_NET=hpnet1 HP_NIC=hpnic1
# shellcheck source=dpdk-config/lab.sh
. dpdk-config/lab.sh
# shellcheck source=dpdk-config/qemu-common.sh
. dpdk-config/qemu-common.sh

[ "$(id -u)" -eq 0 ] || die "run as root (network namespaces, DPDK, apt)"

# --- preparation: packages, kernel, initramfs, build ---------------------------------------------

say "packages"
extra=()
command -v python3 >/dev/null 2>&1 || extra+=(python3)
qvm_packages "${extra[@]}"
echo "$(python3 --version) (QMP client: dpdk-config/qmp.py)"
mkdir -p "$DIR"
qvm_prepare
QMP_SOCK=$DIR/$VM.qmp

# --- cleanup ------------------------------------------------------------------------------------

# Idempotent: run before the summary (so it can report) and again by the EXIT trap.
release() {
    qvm_kill_all
    stop_switch
    lab_down "$PREFIX"
    rm -f "$DIR"/*.sock "$DIR"/*.con "$QMP_SOCK"
    rm -rf "/var/run/dpdk/$FILE_PREFIX"
    rm -f /dev/hugepages/"$FILE_PREFIX"map_* 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    release
    wait 2>/dev/null || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- reporting ----------------------------------------------------------------------------------

report=() failures=()
STEP=
step() {
    STEP=$1
    shift
    say "step $STEP: $*"
}
pass() { report+=("PASS  step $STEP: $*"); echo "   -> PASS: $*"; }
fail() { report+=("FAIL  step $STEP: $*"); failures+=("step $STEP: $*"); echo "   -> FAIL: $*"; return 1; }
# Indents a command's output (stdout and stderr) and keeps its exit status.
show() {
    local rc=0 out
    out=$("$@" 2>&1) || rc=$?
    printf '%s\n' "$out" | sed 's/^/   | /'
    return "$rc"
}
ctl() { "$CTL" --control "$DIR/control.sock" "$@"; }
# qmp LOG STEP...: one QMP session (dpdk-config/qmp.py); its transcript is shown and kept in LOG.
qmp() {
    local log=$DIR/qmp-$1.log rc=0
    shift
    python3 dpdk-config/qmp.py --timeout 120 "$QMP_SOCK" "$@" >"$log" 2>&1 || rc=$?
    sed 's/^/   | /' "$log"
    return "$rc"
}
# The VM's result line for a console command, after byte OFFSET of its console.
vm_result() { wait_line "$DIR/$VM.console" "$1" "$2" "${3:-120}" "${qemu_pid[$VM]}"; }
vm_ready() { vm_result "$1" "VM-READY: $VM" "${2:-60}" >/dev/null; }
# One counter of a guest, from `dpdk-macvtapctl --json stats NAME`.
counter() {
    ctl --json stats "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["'"$2"'"])'
}

# --- the steps ----------------------------------------------------------------------------------

step_1() {
    step 1 "lab, switch with guest $VM and --control, VM $VM (TCG) with QMP"
    lab_up "$PREFIX"
    lab_hairpin "$PREFIX" on
    ip -n "$PREFIX-ext" addr add "$EXT_IP/24" dev ext0
    ip -n "$PREFIX-ext" addr add "$NEW_EXT_IP/24" dev ext0
    echo "   ext0: $(ip -n "$PREFIX-ext" -4 -o addr show dev ext0 | awk '{print $4}' | tr '\n' ' ')"

    # The old log goes first: the background job below truncates it only some time after it
    # forks, and wait_line must not find the previous run's "forwarding" line meanwhile.
    rm -f "$DIR"/*.sock "$DIR"/*.console "$DIR"/qmp-*.log "$DIR/stats.json" "$DIR/switch.log" "$QMP_SOCK"
    printf '[[guest]]\nname = "%s"\nmac = "%s"\nsocket = "%s"\n' "$VM" "$VM_MAC" "$DIR/$VM.sock" >"$DIR/guests.toml"
    ip netns exec "$PREFIX-sw" "$BIN" --no-huge -m 1024 --no-pci --file-prefix="$FILE_PREFIX" -l 0-1 \
        --vdev=net_af_packet0,iface=mvtup0 \
        -- --port 0 --guests "$DIR/guests.toml" --stats-interval 5 --stats-json "$DIR/stats.json" \
        --control "$DIR/control.sock" \
        >"$DIR/switch.log" 2>&1 &
    switch_pid=$!
    if ! wait_line "$DIR/switch.log" 0 'dpdk-macvtap: forwarding' 60 "$switch_pid" >/dev/null; then
        grep -v VHOST_CONFIG "$DIR/switch.log" | sed 's/^/   switch| /'
        fail "dpdk-macvtap did not start forwarding"
        return 1
    fi
    grep -v VHOST_CONFIG "$DIR/switch.log" | sed 's/^/   switch| /'
    echo "   \$ dpdk-macvtapctl --control $DIR/control.sock version"
    show ctl version || { fail "dpdk-macvtapctl version: no answer on $DIR/control.sock"; return 1; }

    say "booting $VM (accel=$ACCEL; TCG is slow, up to ${BOOT_TIMEOUT}s)"
    # The root port is where the second NIC goes: on q35 a device cannot be hot-plugged into
    # the root complex itself.
    qvm_start "$VM" "$VM_MAC" "$VM_IP" "$EXT_IP" 1 \
        -qmp "unix:$QMP_SOCK,server=on,wait=off" \
        -device pcie-root-port,id="$HP_PORT",chassis=1
    local deadline=$((SECONDS + 30))
    while [ ! -S "$QMP_SOCK" ] && [ $SECONDS -lt $deadline ] && kill -0 "${qemu_pid[$VM]}" 2>/dev/null; do
        sleep 0.2
    done
    qmp status '{"execute":"query-status"}' || { fail "no QMP on $QMP_SOCK"; return 1; }
    pass "switch forwarding (pid $switch_pid), control socket answers, QEMU pid ${qemu_pid[$VM]} running, QMP answers"
}

step_2() {
    step 2 "$VM pings the external host $EXT_IP through the switch"
    local r
    if ! r=$(vm_result 0 "VM-RESULT: $VM ping $EXT_IP " "$BOOT_TIMEOUT"); then
        fail "$VM gave no ping result for $EXT_IP (boot or network failure; see $DIR/$VM.console)"
        return 1
    fi
    echo "   $r (after $((SECONDS - T0))s)"
    case $r in *" OK:"*) ;; *) fail "$r"; return 1 ;; esac
    vm_ready 0 || { fail "$VM does not take commands"; return 1; }
    grep -E "guest $VM: link" "$DIR/switch.log" | sed 's/^/   switch| /' || true
    pass "$r"
}

step_3() {
    step 3 "guest-add $NEW, then hot-plug a second NIC on its socket over QMP"
    local off
    off=$(size "$DIR/switch.log")
    echo "   \$ dpdk-macvtapctl guest-add --name $NEW --mac $NEW_MAC --socket $DIR/$NEW.sock"
    show ctl guest-add --name "$NEW" --mac "$NEW_MAC" --socket "$DIR/$NEW.sock" || {
        fail "guest-add $NEW refused"
        return 1
    }
    [ -S "$DIR/$NEW.sock" ] || { fail "guest-add returned but $DIR/$NEW.sock is not a socket"; return 1; }
    echo "   \$ dpdk-macvtapctl guest-list"
    show ctl guest-list

    echo "   QMP: chardev-add, netdev_add, device_add"
    qmp plug \
        '{"execute":"chardev-add","arguments":{"id":"'"$HP_CHR"'","backend":{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"'"$DIR/$NEW.sock"'"}},"server":false}}}}' \
        '{"execute":"netdev_add","arguments":{"type":"vhost-user","id":"'"$HP_NET"'","chardev":"'"$HP_CHR"'"}}' \
        '{"execute":"device_add","arguments":{"driver":"virtio-net-pci","id":"'"$HP_NIC"'","netdev":"'"$HP_NET"'","mac":"'"$NEW_MAC"'","bus":"'"$HP_PORT"'","vectors":0,"romfile":""}}' ||
        { fail "QMP hot-plug failed (see $DIR/qmp-plug.log)"; return 1; }
    # The switch sees the link come up once the guest's virtio-net driver has probed the device.
    local r
    if ! r=$(wait_line "$DIR/switch.log" "$off" "guest $NEW: link up" 120 "$switch_pid"); then
        fail "the switch never saw $NEW's link come up"
        return 1
    fi
    tail -c +"$((off + 1))" "$DIR/switch.log" | grep -vE '^stats|VHOST_CONFIG' | sed 's/^/   switch| /'
    pass "guest-add $NEW, chardev-add/netdev_add/device_add returned {}, switch: '$r'"
}

step_4() {
    step 4 "the VM configures the new NIC ($NEW_IP/24) and pings $NEW_EXT_IP through it"
    local off r dev rx0 tx0 rx tx vm1_rx0 vm1_rx
    rx0=$(counter "$NEW" rx_packets) tx0=$(counter "$NEW" tx_packets)
    vm1_rx0=$(counter "$VM" rx_packets)
    off=$(size "$DIR/$VM.console")
    vm_cmd "$VM" "ifup $NEW_MAC $NEW_IP/24"
    r=$(vm_result "$off" "VM-RESULT: $VM ifup $NEW_MAC " 90) || { fail "no answer to ifup"; return 1; }
    echo "   $r"
    case $r in *" OK: "*) ;; *) fail "$r"; return 1 ;; esac
    dev=$(printf '%s\n' "$r" | awk '{print $6}')
    vm_ready "$off" || { fail "$VM stopped taking commands"; return 1; }

    off=$(size "$DIR/$VM.console")
    vm_cmd "$VM" "ping $NEW_EXT_IP $dev"
    r=$(vm_result "$off" "VM-RESULT: $VM ping $NEW_EXT_IP " 120) || { fail "no ping result for $NEW_EXT_IP"; return 1; }
    vm_ready "$off" || true
    tail -c +"$((off + 1))" "$DIR/$VM.console" | tr -d '\r' | grep -vE '^\[ *[0-9]+\.[0-9]+\]|VM-READY' |
        sed "s/^/   $VM| /"
    case $r in *" OK:"*) ;; *) fail "$r"; return 1 ;; esac

    echo "   \$ dpdk-macvtapctl guest-list"
    show ctl guest-list
    echo "   \$ dpdk-macvtapctl stats $NEW"
    show ctl stats "$NEW"
    echo "   the external host's neighbour entry for $NEW_IP:"
    ip -n "$PREFIX-ext" neigh show "$NEW_IP" | sed 's/^/   | /'
    # The replies went to the new NIC's MAC, i.e. to vm1b's socket, not to eth0's.
    ip -n "$PREFIX-ext" neigh show "$NEW_IP" | grep -q "lladdr $NEW_MAC" ||
        { fail "the external host does not reach $NEW_IP at $NEW_MAC"; return 1; }
    rx=$(counter "$NEW" rx_packets) tx=$(counter "$NEW" tx_packets)
    vm1_rx=$(counter "$VM" rx_packets)
    echo "   $NEW during the ping: rx_packets $rx0 -> $rx, tx_packets $tx0 -> $tx; $VM rx_packets $vm1_rx0 -> $vm1_rx"
    # 5 echo requests and 5 replies at least (plus ARP); ping OK needs one of each.
    if [ $((rx - rx0)) -lt 1 ] || [ $((tx - tx0)) -lt 1 ]; then
        fail "the ping worked but $NEW's counters did not move (rx +$((rx - rx0)), tx +$((tx - tx0)))"
        return 1
    fi
    pass "$r; $NEW counters rx +$((rx - rx0)), tx +$((tx - tx0)) packets; ext0 reaches $NEW_IP at $NEW_MAC"
}

step_5() {
    step 5 "unplug (device_del until DEVICE_DELETED, netdev_del, chardev-remove if still there), guest-del $NEW, $VM still pings"
    local off coff r t
    off=$(size "$DIR/switch.log")
    t=$SECONDS
    echo "   QMP: device_del, wait for DEVICE_DELETED, netdev_del, query-chardev"
    qmp unplug \
        '{"execute":"device_del","arguments":{"id":"'"$HP_NIC"'"}}' \
        "event:DEVICE_DELETED:device=$HP_NIC" \
        '{"execute":"netdev_del","arguments":{"id":"'"$HP_NET"'"}}' \
        '{"execute":"query-chardev"}' ||
        { fail "QMP unplug failed (see $DIR/qmp-unplug.log)"; return 1; }
    # QEMU's vhost-user netdev owns its chardev and deletes it with itself (QEMU 7.2:
    # net_vhost_user_cleanup -> qemu_chr_fe_deinit(..., true)); chardev-remove is then refused
    # with "Chardev '...' not found". Remove it only if it is still there.
    if grep '^qmp< ' "$DIR/qmp-unplug.log" | tail -n1 | grep -q "\"label\":\"$HP_CHR\""; then
        echo "   QMP: chardev-remove ($HP_CHR outlived the netdev)"
        qmp unplug-chardev '{"execute":"chardev-remove","arguments":{"id":"'"$HP_CHR"'"}}' ||
            { fail "chardev-remove $HP_CHR failed"; return 1; }
    else
        echo "   chardev $HP_CHR is gone from query-chardev: QEMU removed it with netdev $HP_NET (no chardev-remove needed)"
    fi
    echo "   unplugged in $((SECONDS - t))s"
    r=$(wait_line "$DIR/switch.log" "$off" "guest $NEW: link down" 30 "$switch_pid") ||
        { fail "the switch never saw $NEW's link go down"; return 1; }
    echo "   switch| $r"
    off=$(size "$DIR/switch.log")

    coff=$(size "$DIR/$VM.console")
    vm_cmd "$VM" links
    r=$(vm_result "$coff" "VM-RESULT: $VM links:" 60) || { fail "no answer to links"; return 1; }
    vm_ready "$coff" || true
    echo "   $r"
    case $r in *"$NEW_MAC"*) fail "the VM still has an interface with $NEW_MAC"; return 1 ;; esac

    echo "   \$ dpdk-macvtapctl guest-del $NEW"
    show ctl guest-del "$NEW" || { fail "guest-del $NEW refused"; return 1; }
    [ ! -e "$DIR/$NEW.sock" ] || { fail "$DIR/$NEW.sock still exists after guest-del"; return 1; }
    echo "   \$ dpdk-macvtapctl guest-list"
    show ctl guest-list
    if ctl guest-list | grep -q "^$NEW "; then fail "$NEW still listed after guest-del"; return 1; fi
    tail -c +"$((off + 1))" "$DIR/switch.log" | grep -vE '^stats|VHOST_CONFIG' | sed 's/^/   switch| /'

    coff=$(size "$DIR/$VM.console")
    vm_cmd "$VM" "ping $EXT_IP"
    r=$(vm_result "$coff" "VM-RESULT: $VM ping $EXT_IP " 120) || { fail "no ping result for $EXT_IP"; return 1; }
    vm_ready "$coff" || true
    echo "   $r"
    case $r in *" OK:"*) ;; *) fail "after the unplug: $r"; return 1 ;; esac
    pass "DEVICE_DELETED, netdev and chardev removed, the VM has no $NEW_MAC interface, guest-del $NEW (socket gone), then $r"
}

step_6() {
    step 6 "power off, stop the switch (exit 0, mempool in use at exit: 0), clean up"
    local off qrc=0 ok=1 leftovers=
    local pid=${qemu_pid[$VM]:-}
    if [ -z "$pid" ]; then
        fail "QEMU was never started"
        ok=
    elif ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid" 2>/dev/null || qrc=$?
        fail "QEMU had already exited (status $qrc; see $DIR/$VM.console)"
        ok=
    else
        off=$(size "$DIR/switch.log")
        # A command only reaches the init once it reads its console (VM-READY): the serial
        # port drops what arrives while the kernel boots.
        if tr -d '\r' <"$DIR/$VM.console" | grep -q "^VM-READY: $VM"; then
            vm_cmd "$VM" off
            wait_line "$DIR/$VM.console" 0 "VM-DONE: $VM" 60 "$pid" >/dev/null || {
                fail "$VM did not power off"
                ok=
            }
            local deadline=$((SECONDS + 30))
            while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
        else
            echo "   $VM never reached its command loop: stopping QEMU"
        fi
        if kill -0 "$pid" 2>/dev/null; then
            qvm_kill_all
            fail "QEMU did not exit by itself (killed)"
            ok=
        fi
        wait "$pid" 2>/dev/null || qrc=$?
        echo "   QEMU exited with status $qrc"
        [ "$qrc" -eq 0 ] || { fail "QEMU exited with status $qrc"; ok=; }
        # The switch reports the disconnect; the final counters then include everything.
        if grep -q "^guest $VM: link up" "$DIR/switch.log"; then
            wait_line "$DIR/switch.log" "$off" "guest $VM: link down" 30 "$switch_pid" | sed 's/^/   switch| /' || true
        fi
    fi
    unset "qemu_pid[$VM]"
    off=$(size "$DIR/switch.log")
    stop_switch
    tail -c +"$((off + 1))" "$DIR/switch.log" | grep -vE '^stats:|VHOST_CONFIG' | sed 's/^/   switch| /'
    echo "   switch exit status: $switch_rc"
    [ "$switch_rc" = 0 ] || { fail "dpdk-macvtap exited with status $switch_rc"; ok=; }
    grep -q '^mempool in use at exit: 0 ' "$DIR/switch.log" || { fail "no 'mempool in use at exit: 0'"; ok=; }
    # Anything alarming the switch (or DPDK's vhost library) said along the way, for the reader.
    local alarms
    alarms=$(grep -inE '(^|[^a-z])(error|panic|warn|fail|leak)' "$DIR/switch.log" | grep -vE -- '-FAILED: 0$' || true)
    if [ -n "$alarms" ]; then
        echo "   errors/warnings in the switch log:"
        printf '%s\n' "$alarms" | sed 's/^/   | /'
    else
        echo "   the switch log has no error, warning, failure or panic line"
    fi
    release
    for ns in "$PREFIX-sw" "$PREFIX-br" "$PREFIX-ext"; do [ -e "/var/run/netns/$ns" ] && leftovers+=" netns $ns"; done
    [ -e "/var/run/dpdk/$FILE_PREFIX" ] && leftovers+=" /var/run/dpdk/$FILE_PREFIX"
    for s in "$DIR"/*.sock "$QMP_SOCK" "$DIR/control.sock"; do [ -e "$s" ] && leftovers+=" $s"; done
    if [ -n "$leftovers" ]; then fail "left behind:$leftovers"; ok=; fi
    echo "   cleanup: namespaces $PREFIX-{sw,br,ext}, sockets and /var/run/dpdk/$FILE_PREFIX ${leftovers:-all gone}"
    [ -n "$ok" ] && pass "QEMU exit 0, switch exit 0, $(grep -m1 '^mempool in use at exit' "$DIR/switch.log" | cut -d'(' -f1)and nothing left behind"
}

for s in 1 2 3 4 5; do
    if ! "step_$s"; then
        for t in $(seq $((s + 1)) 5); do report+=("SKIP  step $t (after the failure in step $s)"); done
        break
    fi
done
step_6 || true

# --- report -------------------------------------------------------------------------------------

say "$VM console (without kernel messages)"
qvm_console "$VM"

say "summary"
printf '%s\n' "$(grep -E 'link (up|down)|^(added|removed|final)' "$DIR/switch.log" || true)" | sed 's/^/   switch| /'
printf '   %s\n' "${report[@]}"
echo "   logs: $DIR/switch.log, $DIR/$VM.console, $DIR/qmp-*.log; total time: $((SECONDS - T0))s"
if [ ${#failures[@]} -gt 0 ]; then
    echo "   FAIL (${#failures[@]} failure(s))"
    exit 1
fi
echo "   PASS"
