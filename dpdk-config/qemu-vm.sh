#!/usr/bin/env bash
# Attaches real QEMU VMs to dpdk-macvtap, end to end, with one command (as root, Debian 12):
#   bash dpdk-config/qemu-vm.sh
#
#   PREFIX-sw: dpdk-macvtap, uplink mvtup0 (net_af_packet)   <- vhost-user sockets ->  QEMU vm1, vm2
#   PREFIX-br: Linux bridge br0 (the external VEPA switch; hairpin toggled by the script)
#   PREFIX-ext: the external host, ext0 = 10.77.0.1/24
#
# Each VM boots the Debian kernel (extracted from its .deb, no bootloader installed) with a
# busybox initramfs whose /init loads the virtio-net modules, sets a static IP, pings the
# external host and prints `VM-RESULT: ...`. With two VMs, vm1 then pings vm2 twice, once with
# hairpin on (must work) and once with hairpin off (must fail: VEPA isolation); the VMs take
# these commands over their serial consoles. The kernel, the initramfs and its /init, the QEMU
# command line and the waiting helpers are in qemu-common.sh (shared with qemu-hotplug.sh).
#
# Exits 0 only if every expectation held. Logs stay in $DIR (switch.log, vm1.console, ...);
# processes, namespaces, sockets and DPDK runtime files are removed on exit.
#
#   VMS=1|2 (default 2)   PREFIX=qvm   DIR=/tmp/qemu-vm   VM_MEM=512 (MB)
#   BOOT_TIMEOUT=300 (s, per VM; TCG is slow)   SKIP_BUILD=1   CLEAN_CACHE=1 (re-fetch the kernel)
#   ACCEL=tcg (default; KVM is not assumed to work here; ACCEL=kvm:tcg tries KVM first)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ME=qemu-vm
VMS=${VMS:-2}
PREFIX=${PREFIX:-qvm}
DIR=${DIR:-/tmp/qemu-vm}
VM_MEM=${VM_MEM:-512}
FILE_PREFIX=qemuvm
EXT_IP=10.77.0.1
declare -A VM_MAC=([vm1]=52:54:00:00:00:01 [vm2]=52:54:00:00:00:02)
declare -A VM_IP=([vm1]=10.77.0.11 [vm2]=10.77.0.12)
# shellcheck source=dpdk-config/lab.sh
. dpdk-config/lab.sh
# shellcheck source=dpdk-config/qemu-common.sh
. dpdk-config/qemu-common.sh

[ "$(id -u)" -eq 0 ] || die "run as root (network namespaces, DPDK, apt)"
case $VMS in 1 | 2) ;; *) die "VMS must be 1 or 2, not '$VMS'" ;; esac

# --- 1. packages, kernel, initramfs -------------------------------------------------------------

say "packages"
qvm_packages
mkdir -p "$DIR"
qvm_kernel
say "initramfs"
qvm_initramfs

# --- 2. build -----------------------------------------------------------------------------------

qvm_build dpdk-macvtap
BIN=$BIN_dpdk_macvtap

# --- cleanup ------------------------------------------------------------------------------------

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    qvm_kill_all
    stop_switch
    wait 2>/dev/null || true
    lab_down "$PREFIX"
    rm -f "$DIR"/*.sock "$DIR"/*.con
    rm -rf "/var/run/dpdk/$FILE_PREFIX"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 3. lab and switch --------------------------------------------------------------------------

say "lab: $PREFIX-sw (uplink mvtup0) / $PREFIX-br (br0) / $PREFIX-ext (ext0 = $EXT_IP/24)"
lab_up "$PREFIX"
lab_hairpin "$PREFIX" on
ip -n "$PREFIX-ext" addr add "$EXT_IP/24" dev ext0

# The old log goes first: the background job below truncates it only some time after it
# forks, and wait_line must not find the previous run's "forwarding" line meanwhile.
rm -f "$DIR"/*.sock "$DIR"/*.console "$DIR/stats.json" "$DIR/switch.log"
{
    for name in $(seq -f 'vm%g' 1 "$VMS"); do
        printf '[[guest]]\nname = "%s"\nmac = "%s"\nsocket = "%s"\n\n' "$name" "${VM_MAC[$name]}" "$DIR/$name.sock"
    done
} >"$DIR/guests.toml"

say "starting dpdk-macvtap in $PREFIX-sw"
ip netns exec "$PREFIX-sw" "$BIN" --no-huge -m 1024 --no-pci --file-prefix="$FILE_PREFIX" -l 0-1 \
    --vdev=net_af_packet0,iface=mvtup0 \
    -- --port 0 --guests "$DIR/guests.toml" --stats-interval 2 --stats-json "$DIR/stats.json" \
    --control "$DIR/control.sock" \
    >"$DIR/switch.log" 2>&1 &
switch_pid=$!
wait_line "$DIR/switch.log" 0 'dpdk-macvtap: forwarding' 60 "$switch_pid" >/dev/null ||
    die "dpdk-macvtap did not start forwarding; its log:
$(tail -n 30 "$DIR/switch.log")"
sed 's/^/   switch| /' "$DIR/switch.log"

# --- 4. VMs -------------------------------------------------------------------------------------

accel=$ACCEL

start_vm() { qvm_start "$1" "${VM_MAC[$1]}" "${VM_IP[$1]}" "$EXT_IP" "$WAIT"; }

WAIT=0
if [ "$VMS" -eq 2 ]; then WAIT=1; fi
vm_names=$(seq -f "vm%g" -s " " 1 "$VMS")

say "booting $vm_names (accel=$accel; TCG is slow, up to ${BOOT_TIMEOUT}s)"
for name in $vm_names; do start_vm "$name"; done

failures=()
declare -A result=()
for name in $vm_names; do
    if r=$(wait_line "$DIR/$name.console" 0 "VM-RESULT: $name ping $EXT_IP " "$BOOT_TIMEOUT" "${qemu_pid[$name]}"); then
        result[$name-ext]=$r
        echo "   $r (after $((SECONDS - T0))s)"
        case $r in *" OK:"*) ;; *) failures+=("$name could not ping $EXT_IP") ;; esac
    else
        result[$name-ext]="VM-RESULT: $name ping $EXT_IP: no result"
        failures+=("$name gave no ping result for $EXT_IP")
    fi
done
grep -h 'link up' "$DIR/switch.log" | sed 's/^/   switch| /' || true

# --- 5. vm1 -> vm2 with hairpin on, then off ------------------------------------------------------

hairpin_ping() {
    local mode=$1 expect=$2 off r
    lab_hairpin "$PREFIX" "$mode"
    off=$(size "$DIR/vm1.console")
    vm_cmd vm1 "ping ${VM_IP[vm2]}"
    if r=$(wait_line "$DIR/vm1.console" "$off" "VM-RESULT: vm1 ping ${VM_IP[vm2]} " 120 "${qemu_pid[vm1]}"); then
        result[hairpin-$mode]="hairpin $mode: $r"
        echo "   hairpin $mode: $r"
        case $r in
            *" $expect:"*) echo "   as expected ($expect)" ;;
            *) failures+=("vm1 -> vm2 with hairpin $mode: expected $expect") ;;
        esac
    else
        result[hairpin-$mode]="hairpin $mode: no result"
        failures+=("vm1 -> vm2 with hairpin $mode: no result")
    fi
    wait_line "$DIR/vm1.console" "$off" "VM-READY: vm1" 30 "${qemu_pid[vm1]}" >/dev/null || true
}

if [ "$VMS" -eq 2 ]; then
    for name in vm1 vm2; do
        wait_line "$DIR/$name.console" 0 "VM-READY: $name" 60 "${qemu_pid[$name]}" >/dev/null ||
            failures+=("$name did not wait for commands")
    done
    say "vm1 -> vm2 (${VM_IP[vm2]}), hairpin on: the bridge reflects the frames back to the switch"
    hairpin_ping on OK
    say "vm1 -> vm2 (${VM_IP[vm2]}), hairpin off: VEPA isolation, the frames die at the bridge"
    hairpin_ping off FAIL
    lab_hairpin "$PREFIX" on
fi

# --- 6. shut down -------------------------------------------------------------------------------

say "powering off the VMs"
for name in $vm_names; do
    if [ "$WAIT" = 1 ]; then vm_cmd "$name" off; fi
done
for name in $vm_names; do
    if ! wait_line "$DIR/$name.console" 0 "VM-DONE: $name" 60 "${qemu_pid[$name]}" >/dev/null; then
        failures+=("$name did not power off")
    fi
    for _ in $(seq 100); do kill -0 "${qemu_pid[$name]}" 2>/dev/null || break; sleep 0.2; done
    qrc=0
    wait "${qemu_pid[$name]}" 2>/dev/null || qrc=$?
    echo "   $name: QEMU exited with status $qrc"
    [ "$qrc" -eq 0 ] || failures+=("QEMU for $name exited with status $qrc")
done
# Let the switch notice the disconnects (and print the stats of the last interval).
sleep 2.5
links_log=$(grep -E 'link (up|down)' "$DIR/switch.log" || true)
stats_last=$(grep '^stats:' "$DIR/switch.log" | tail -n 1 || true)
off=$(size "$DIR/switch.log")
stop_switch
[ "$switch_rc" -eq 0 ] || failures+=("dpdk-macvtap exited with status $switch_rc")

# --- report -------------------------------------------------------------------------------------

for name in $vm_names; do
    say "$name console (without kernel messages)"
    qvm_console "$name"
done

say "summary"
printf '%s\n' "$links_log" | sed 's/^/   switch| /'
echo "   switch| last $stats_last"
tail -c +"$((off + 1))" "$DIR/switch.log" | grep -E '^(final|mempool in use)' | sed 's/^/   switch| /'
echo "   switch exit status: $switch_rc; counters as JSON: $DIR/stats.json"
for name in $vm_names; do echo "   ${result[$name-ext]}"; done
if [ "$VMS" -eq 2 ]; then
    echo "   ${result[hairpin-on]}"
    echo "   ${result[hairpin-off]}"
fi
echo "   total time: $((SECONDS - T0))s"
if [ ${#failures[@]} -gt 0 ]; then
    printf '   FAILED: %s\n' "${failures[@]}"
    exit 1
fi
echo "   PASS"
