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
# these commands over their serial consoles.
#
# Exits 0 only if every expectation held. Logs stay in $DIR (switch.log, vm1.console, ...);
# processes, namespaces, sockets and DPDK runtime files are removed on exit.
#
#   VMS=1|2 (default 2)   PREFIX=qvm   DIR=/tmp/qemu-vm   VM_MEM=512 (MB)
#   BOOT_TIMEOUT=300 (s, per VM; TCG is slow)   SKIP_BUILD=1   CLEAN_CACHE=1 (re-fetch the kernel)
#   ACCEL=tcg (default; KVM is not assumed to work here; ACCEL=kvm:tcg tries KVM first)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=dpdk-config/lab.sh
. dpdk-config/lab.sh

VMS=${VMS:-2}
PREFIX=${PREFIX:-qvm}
DIR=${DIR:-/tmp/qemu-vm}
VM_MEM=${VM_MEM:-512}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
FILE_PREFIX=qemuvm
BIN=$ROOT/target/release/dpdk-macvtap
EXT_IP=10.77.0.1
declare -A VM_MAC=([vm1]=52:54:00:00:00:01 [vm2]=52:54:00:00:00:02)
declare -A VM_IP=([vm1]=10.77.0.11 [vm2]=10.77.0.12)
# Load order follows modules.dep: virtio_net needs net_failover -> failover, and virtio and
# virtio_ring; virtio_pci needs virtio_pci_modern_dev and virtio_pci_legacy_dev.
MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net)

T0=$SECONDS
say() { printf '\n== [%3ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { echo "qemu-vm: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (network namespaces, DPDK, apt)"
case $VMS in 1 | 2) ;; *) die "VMS must be 1 or 2, not '$VMS'" ;; esac

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# --- 1. packages, kernel, initramfs -------------------------------------------------------------

say "packages"
need=()
for p in qemu-system-x86 busybox-static cpio kmod; do installed "$p" || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The switch's own build and run dependencies (DPDK, clang, ...): setup.sh installs them.
if ! pkg-config --exists libdpdk 2>/dev/null || ! installed librte-net-vhost23 || ! installed librte-net-af-packet23; then
    bash dpdk-config/setup.sh
fi
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
echo "$(qemu-system-x86_64 --version | head -n1); busybox $(busybox | head -n1 | awk '{print $2}')"

mkdir -p "$DIR"
if [ -n "${CLEAN_CACHE:-}" ]; then rm -rf "$DIR/root"; fi

# The kernel linux-image-amd64 points at, unpacked into $DIR/root (kept as a cache between runs).
kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
vmlinuz=$(find "$DIR/root/boot" -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | sort | tail -n1 || true)
if [ -z "$vmlinuz" ]; then
    pkg=$(kernel_pkg)
    if [ -z "$pkg" ]; then
        apt-get update -qq
        pkg=$(kernel_pkg)
    fi
    [ -n "$pkg" ] || die "apt-cache depends linux-image-amd64 names no linux-image-<version> package"
    say "kernel: $pkg (apt-get download + dpkg -x, no bootloader)"
    rm -rf "$DIR/root" "$DIR"/linux-image-*.deb
    # The sandbox user _apt could not write into $DIR; root downloads it itself.
    (cd "$DIR" && apt-get download -qq -o APT::Sandbox::User=root "$pkg")
    mkdir -p "$DIR/root"
    dpkg -x "$DIR"/linux-image-*.deb "$DIR/root"
    rm -f "$DIR"/linux-image-*.deb
    vmlinuz=$(find "$DIR/root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | tail -n1)
    [ -n "$vmlinuz" ] || die "no vmlinuz in $pkg"
fi
KVER=${vmlinuz##*/vmlinuz-}
MODDIR=$DIR/root/lib/modules/$KVER
# The package ships no modules.dep (its postinst runs depmod); make one to check the list above.
[ -s "$MODDIR/modules.dep" ] || depmod -b "$DIR/root" "$KVER"
echo "kernel $KVER: $vmlinuz"

say "initramfs"
INITRD=$DIR/initramfs.cpio.gz
STAGE=$DIR/initramfs
rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,sbin,dev,proc,sys,tmp,lib/modules,etc}
cp /bin/busybox "$STAGE/bin/busybox"
for m in "${MODULES[@]}"; do
    ko=$(modinfo -b "$DIR/root" -k "$KVER" -n "$m" 2>/dev/null) || die "module $m not found for kernel $KVER"
    case $ko in
        *.ko) cp "$ko" "$STAGE/lib/modules/$m.ko" ;;
        *.ko.xz) xz -dc "$ko" >"$STAGE/lib/modules/$m.ko" ;;
        *.ko.zst) zstd -qdc "$ko" >"$STAGE/lib/modules/$m.ko" ;;
        *) die "unexpected module file $ko" ;;
    esac
    # Every dependency must come earlier in MODULES, or insmod (no modprobe here) fails.
    deps=$(modinfo -b "$DIR/root" -k "$KVER" -F depends "$m" | tr ',' ' ')
    for d in $deps; do
        [ -f "$STAGE/lib/modules/$d.ko" ] || die "module $m depends on $d, which is not loaded before it"
    done
done
mknod -m 600 "$STAGE/dev/console" c 5 1
mknod -m 666 "$STAGE/dev/null" c 1 3

# Parameters come from the kernel command line: `name=value` words the kernel does not know are
# handed to init as environment variables (vm_name, vm_ip, vm_ping, vm_wait).
cat >"$STAGE/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
name=${vm_name:-vm}

bye() {
    echo "VM-DONE: $name"
    poweroff -f
}

for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
    insmod /lib/modules/$m.ko || echo "VM-ERROR: $name: insmod $m failed"
done
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
if [ ! -e /sys/class/net/eth0 ]; then
    echo "VM-RESULT: $name FAIL: no eth0 (virtio-net did not probe)"
    bye
fi
ip link set lo up
ip addr add "$vm_ip/24" dev eth0
ip link set eth0 up
n=0
while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
echo "--- $name: ip link"
ip link
echo "--- $name: ip addr"
ip addr

# Runs ping and prints its summary as one VM-RESULT line; OK when at least one reply came back.
ping_report() {
    echo "--- $name: ping -c 5 -W 2 $1"
    ping -c 5 -W 2 "$1" >/tmp/ping.out 2>&1
    rc=$?
    cat /tmp/ping.out
    if [ $rc = 0 ]; then st=OK; else st=FAIL; fi
    sum=$(grep -E 'packets transmitted|round-trip' /tmp/ping.out | tr '\n' ' ')
    sum=${sum% }
    echo "VM-RESULT: $name ping $1 $st: $sum"
}

ping_report "$vm_ping"
if [ "$vm_wait" = 1 ]; then
    # The host drives the rest over the serial console: "ping IP", "arp", "off".
    echo "VM-READY: $name"
    while read -r cmd arg; do
        case $cmd in
            ping) ping_report "$arg" ;;
            arp) ip neigh ;;
            off) break ;;
            "") continue ;;
            *) echo "VM-ERROR: $name: unknown command '$cmd'" ;;
        esac
        echo "VM-READY: $name"
    done
fi
bye
INIT
chmod 755 "$STAGE/init"
(cd "$STAGE" && find . | cpio -o -H newc --quiet | gzip -1 >"$INITRD")
echo "$INITRD: $(du -h "$INITRD" | cut -f1) (busybox, ${#MODULES[@]} modules)"

# --- 2. build -----------------------------------------------------------------------------------

if [ -z "${SKIP_BUILD:-}" ]; then
    say "cargo build --release"
    cargo build --release --bin dpdk-macvtap ||
        die "the build failed (SKIP_BUILD=1 runs the binary already in target/release)"
fi
[ -x "$BIN" ] || die "$BIN is missing (build with: cargo build --release)"
# A private copy: others may rebuild target/release while the VMs boot.
cp "$BIN" "$DIR/dpdk-macvtap"
BIN=$DIR/dpdk-macvtap
echo "dpdk-macvtap: built $(date -r "$BIN" '+%F %T')"

# --- cleanup ------------------------------------------------------------------------------------

switch_pid=
declare -A qemu_pid=() con_fd=()
switch_rc=

# Stops the switch with SIGINT (it prints its final counters) and records its exit status.
stop_switch() {
    [ -n "$switch_pid" ] || return 0
    kill -INT "$switch_pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$switch_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$switch_pid" 2>/dev/null; then
        echo "qemu-vm: switch did not stop on SIGINT within 15 s; killing it" >&2
        kill -KILL "$switch_pid" 2>/dev/null || true
    fi
    switch_rc=0
    wait "$switch_pid" 2>/dev/null || switch_rc=$?
    switch_pid=
}

cleanup() {
    local rc=$? name
    trap - EXIT INT TERM
    for name in "${!qemu_pid[@]}"; do
        kill -0 "${qemu_pid[$name]}" 2>/dev/null || continue
        kill -TERM "${qemu_pid[$name]}" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "${qemu_pid[$name]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${qemu_pid[$name]}" 2>/dev/null || true
    done
    stop_switch
    wait 2>/dev/null || true
    lab_down "$PREFIX"
    rm -f "$DIR"/*.sock "$DIR"/*.con
    rm -rf "/var/run/dpdk/$FILE_PREFIX" "$STAGE"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until FILE has a line matching PATTERN (extended regex) after byte OFFSET; prints it.
# Fails after TIMEOUT seconds, or as soon as process PID is gone.
wait_line() {
    local file=$1 offset=$2 pattern=$3 timeout=$4 pid=$5 deadline=$((SECONDS + $4)) line
    while [ "$SECONDS" -lt "$deadline" ]; do
        if line=$(tail -c +"$((offset + 1))" "$file" 2>/dev/null | tr -d '\r' | grep -E -m1 -- "$pattern"); then
            printf '%s\n' "$line"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || {
            # One last look: the line may have been written just before the process exited.
            tail -c +"$((offset + 1))" "$file" 2>/dev/null | tr -d '\r' | grep -E -m1 -- "$pattern" && return 0
            echo "qemu-vm: process $pid ($file) exited while waiting for /$pattern/" >&2
            return 1
        }
        sleep 0.5
    done
    echo "qemu-vm: no /$pattern/ in $file within ${timeout}s" >&2
    return 1
}

size() { stat -c %s "$1"; }

# --- 3. lab and switch --------------------------------------------------------------------------

say "lab: $PREFIX-sw (uplink mvtup0) / $PREFIX-br (br0) / $PREFIX-ext (ext0 = $EXT_IP/24)"
lab_up "$PREFIX"
lab_hairpin "$PREFIX" on
ip -n "$PREFIX-ext" addr add "$EXT_IP/24" dev ext0

rm -f "$DIR"/*.sock "$DIR"/*.console "$DIR/stats.json"
{
    for name in $(seq -f 'vm%g' 1 "$VMS"); do
        printf '[[guest]]\nname = "%s"\nmac = "%s"\nsocket = "%s"\n\n' "$name" "${VM_MAC[$name]}" "$DIR/$name.sock"
    done
} >"$DIR/guests.toml"

say "starting dpdk-macvtap in $PREFIX-sw"
ip netns exec "$PREFIX-sw" "$BIN" --no-huge -m 1024 --no-pci --file-prefix="$FILE_PREFIX" -l 0-1 \
    --vdev=net_af_packet0,iface=mvtup0 \
    -- --port 0 --guests "$DIR/guests.toml" --stats-interval 2 --stats-json "$DIR/stats.json" \
    >"$DIR/switch.log" 2>&1 &
switch_pid=$!
wait_line "$DIR/switch.log" 0 'dpdk-macvtap: forwarding' 60 "$switch_pid" >/dev/null ||
    die "dpdk-macvtap did not start forwarding; its log:
$(tail -n 30 "$DIR/switch.log")"
sed 's/^/   switch| /' "$DIR/switch.log"

# --- 4. VMs -------------------------------------------------------------------------------------

accel=${ACCEL:-tcg}

start_vm() {
    local name=$1 fd
    [ -S "$DIR/$name.sock" ] || die "the switch has not created $DIR/$name.sock"
    # The serial console reads from a FIFO that stays open read-write on our side, so writing
    # commands never blocks and QEMU never sees end-of-file.
    rm -f "$DIR/$name.con"
    mkfifo "$DIR/$name.con"
    exec {fd}<>"$DIR/$name.con"
    con_fd[$name]=$fd
    # vectors=0: QEMU 7.2 under TCG crashes when the guest driver enables MSI-X on a vhost-user
    # virtio-net-pci; with no vectors the guest falls back to INTx. romfile=: no iPXE ROM to run.
    qemu-system-x86_64 -machine q35,accel="$accel" -cpu max -m "$VM_MEM" -smp 1 \
        -object memory-backend-memfd,id=mem,size="${VM_MEM}M",share=on -numa node,memdev=mem \
        -chardev socket,id=chr0,path="$DIR/$name.sock" \
        -netdev vhost-user,id=net0,chardev=chr0 \
        -device virtio-net-pci,netdev=net0,mac="${VM_MAC[$name]}",vectors=0,romfile= \
        -kernel "$vmlinuz" -initrd "$INITRD" \
        -append "console=ttyS0 quiet panic=-1 ipv6.disable=1 vm_name=$name vm_ip=${VM_IP[$name]} vm_ping=$EXT_IP vm_wait=$WAIT" \
        -nographic -no-reboot \
        <"$DIR/$name.con" >"$DIR/$name.console" 2>&1 &
    qemu_pid[$name]=$!
    echo "   $name: QEMU pid ${qemu_pid[$name]}, mac ${VM_MAC[$name]}, ip ${VM_IP[$name]}/24, console $DIR/$name.console"
}

vm_cmd() { printf '%s\n' "$2" >&"${con_fd[$1]}"; }

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
    # Also without SeaBIOS's terminal escapes (ESC [ ... letter, ESC c).
    tr -d '\r' <"$DIR/$name.console" | sed -E $'s/\x1b\\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' |
        grep -vE '^\[ *[0-9]+\.[0-9]+\]' | sed "s/^/   $name| /"
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
