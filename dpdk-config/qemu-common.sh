# Shared by the QEMU scripts (qemu-vm.sh, qemu-hotplug.sh); sourced, not run.
#
# The caller has `set -euo pipefail`, has cd'ed to the repository root, and sets before sourcing:
#   ME            its name, for messages            DIR          its work directory
#   FILE_PREFIX   the switch's EAL --file-prefix    VM_MEM       guest memory in MB
# and may set KERNEL_DIR (where the guest kernel is unpacked and kept between runs; default
# $DIR/root) and ACCEL (default tcg).
#
# What it gives:
#   say / die                 progress and fatal messages
#   qvm_packages [PKG...]     installs QEMU, busybox, ... (plus PKG...), and the switch's build deps
#   qvm_kernel                the Debian kernel, unpacked into KERNEL_DIR: sets vmlinuz, KVER
#   qvm_initramfs             a busybox initramfs ($INITRD) whose /init is described below
#   qvm_build BIN...          cargo build --release of the binaries; private copies in $DIR
#   qvm_prepare               qvm_kernel, qvm_initramfs and qvm_build of the switch and its
#                             client: sets vmlinuz, KVER, BIN and CTL
#   qvm_start NAME MAC IP PING WAIT [QEMU ARG...]   boots a VM on $DIR/NAME.sock (qemu_pid[NAME]);
#                             optional variables for the call: QVM_ID (the key of qemu_pid, con_fd
#                             and the console files, default NAME: two QEMUs of one VM, as in a
#                             migration), QVM_SOCK (the vhost-user socket, default $DIR/NAME.sock),
#                             QVM_SOCK_SERVER=1 (QEMU creates the socket: the switch is the client),
#                             QVM_NIC_OPTS (",key=value..." appended to the virtio-net-pci device),
#                             QVM_TAP=IFNAME (QEMU serves the NIC itself, in userspace, on the
#                             existing tap IFNAME: no vhost-user socket, no vhost-net),
#                             QVM_NETNS (QEMU runs in this network namespace: where the tap is)
#   vm_cmd NAME LINE          one command to the VM's init, over its serial console
#   wait_line FILE OFFSET REGEX TIMEOUT PID         waits for a line (no fixed sleeps)
#   size FILE                 its size in bytes (the OFFSET of what comes next)
#   stop_switch               SIGINT to $switch_pid, its exit status in $switch_rc
#   qvm_kill_all              kills the VMs still running (for the EXIT trap)
#   qvm_console NAME          the VM's console without kernel messages and terminal escapes
#
# The VM's init (/init in the initramfs) takes its parameters from the kernel command line
# (vm_name, vm_ip, vm_ping, vm_wait): it loads the virtio-net modules, gives eth0 vm_ip/24,
# pings vm_ping and prints `VM-RESULT: NAME ping IP OK|FAIL: ...`. With vm_wait=1 it then
# prints `VM-READY: NAME` and takes one command per line on its console, each answered with
# VM-RESULT lines and a new VM-READY:
#   ping IP [DEV]       5 pings (through DEV: ping -I DEV)
#   arp                 ip neigh
#   ifup MAC IP/LEN     waits (up to 60 s) for the interface with that MAC (a hot-plugged NIC),
#                       gives it IP/LEN and brings it up; from then on every interface answers
#                       ARP only for its own addresses (arp_ignore=1, arp_announce=2)
#   links               the interfaces: `VM-RESULT: NAME links: lo=MAC eth0=MAC ...`
#   stream IP PORT      in the background, a TCP connection to IP:PORT carrying `seq N` lines,
#                       10 a second, until it breaks (then `VM-RESULT: NAME stream ended`)
#   off                 powers off (`VM-DONE: NAME`)

KERNEL_DIR=${KERNEL_DIR:-$DIR/root}
ACCEL=${ACCEL:-tcg}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
# Load order follows modules.dep: virtio_net needs net_failover -> failover, and virtio and
# virtio_ring; virtio_pci needs virtio_pci_modern_dev and virtio_pci_legacy_dev.
MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net)

T0=${T0:-$SECONDS}
say() { printf '\n== [%3ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { echo "$ME: error: $*" >&2; exit 1; }

switch_pid=
switch_rc=
declare -A qemu_pid=() con_fd=()

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# --- packages, kernel, initramfs ----------------------------------------------------------------

qvm_packages() {
    local need=() p
    for p in qemu-system-x86 busybox-static cpio kmod "$@"; do installed "$p" || need+=("$p"); done
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
}

# The kernel linux-image-amd64 points at, unpacked into KERNEL_DIR (kept as a cache between runs).
_qvm_kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

qvm_kernel() {
    local pkg tmp
    if [ -n "${CLEAN_CACHE:-}" ]; then rm -rf "$KERNEL_DIR"; fi
    vmlinuz=$(find "$KERNEL_DIR/boot" -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | sort | tail -n1 || true)
    if [ -z "$vmlinuz" ]; then
        pkg=$(_qvm_kernel_pkg)
        if [ -z "$pkg" ]; then
            apt-get update -qq
            pkg=$(_qvm_kernel_pkg)
        fi
        [ -n "$pkg" ] || die "apt-cache depends linux-image-amd64 names no linux-image-<version> package"
        say "kernel: $pkg (apt-get download + dpkg -x, no bootloader)"
        rm -rf "$KERNEL_DIR"
        tmp=$(mktemp -d "$DIR/kernel.XXXXXX")
        # The sandbox user _apt could not write into $DIR; root downloads it itself.
        (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg")
        mkdir -p "$KERNEL_DIR"
        dpkg -x "$tmp"/linux-image-*.deb "$KERNEL_DIR"
        rm -rf "$tmp"
        vmlinuz=$(find "$KERNEL_DIR/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | tail -n1)
        [ -n "$vmlinuz" ] || die "no vmlinuz in $pkg"
    fi
    KVER=${vmlinuz##*/vmlinuz-}
    # The package ships no modules.dep (its postinst runs depmod); make one to check MODULES.
    [ -s "$KERNEL_DIR/lib/modules/$KVER/modules.dep" ] || depmod -b "$KERNEL_DIR" "$KVER"
    echo "kernel $KVER: $vmlinuz"
}

qvm_initramfs() {
    local m ko deps d
    INITRD=$DIR/initramfs.cpio.gz
    STAGE=$DIR/initramfs
    rm -rf "$STAGE"
    mkdir -p "$STAGE"/{bin,sbin,dev,proc,sys,tmp,lib/modules,etc}
    cp /bin/busybox "$STAGE/bin/busybox"
    for m in "${MODULES[@]}"; do
        ko=$(modinfo -b "$KERNEL_DIR" -k "$KVER" -n "$m" 2>/dev/null) || die "module $m not found for kernel $KVER"
        case $ko in
            *.ko) cp "$ko" "$STAGE/lib/modules/$m.ko" ;;
            *.ko.xz) xz -dc "$ko" >"$STAGE/lib/modules/$m.ko" ;;
            *.ko.zst) zstd -qdc "$ko" >"$STAGE/lib/modules/$m.ko" ;;
            *) die "unexpected module file $ko" ;;
        esac
        # Every dependency must come earlier in MODULES, or insmod (no modprobe here) fails.
        deps=$(modinfo -b "$KERNEL_DIR" -k "$KVER" -F depends "$m" | tr ',' ' ')
        for d in $deps; do
            [ -f "$STAGE/lib/modules/$d.ko" ] || die "module $m depends on $d, which is not loaded before it"
        done
    done
    mknod -m 600 "$STAGE/dev/console" c 5 1
    mknod -m 666 "$STAGE/dev/null" c 1 3

    # Parameters come from the kernel command line: `name=value` words the kernel does not know
    # are handed to init as environment variables (vm_name, vm_ip, vm_ping, vm_wait).
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

# Runs ping (through interface $2 if given) and prints its summary as one VM-RESULT line; OK
# when at least one reply came back.
ping_report() {
    if [ -n "$2" ]; then
        echo "--- $name: ping -c 5 -W 2 -I $2 $1"
        ping -c 5 -W 2 -I "$2" "$1" >/tmp/ping.out 2>&1
    else
        echo "--- $name: ping -c 5 -W 2 $1"
        ping -c 5 -W 2 "$1" >/tmp/ping.out 2>&1
    fi
    rc=$?
    cat /tmp/ping.out
    if [ $rc = 0 ]; then st=OK; else st=FAIL; fi
    sum=$(grep -E 'packets transmitted|round-trip' /tmp/ping.out | tr '\n' ' ')
    sum=${sum% }
    echo "VM-RESULT: $name ping $1 $st: $sum"
}

# The interface whose MAC is $1, or nothing.
dev_of() {
    for d in /sys/class/net/*; do
        if [ "$(cat "$d/address" 2>/dev/null)" = "$1" ]; then
            echo "${d##*/}"
            return
        fi
    done
}

# Configures the interface with MAC $1 (waiting up to 60 s for it to appear) as $2 (IP/LEN).
if_up() {
    n=0
    dev=$(dev_of "$1")
    while [ -z "$dev" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); dev=$(dev_of "$1"); done
    if [ -z "$dev" ]; then
        echo "VM-RESULT: $name ifup $1 FAIL: no interface with this MAC after 60 s"
        return
    fi
    # Two interfaces on one host: each answers ARP only for its own addresses and sources its
    # requests from them, so the neighbours learn the right MAC for each address.
    echo 1 >/proc/sys/net/ipv4/conf/all/arp_ignore
    echo 2 >/proc/sys/net/ipv4/conf/all/arp_announce
    ip addr add "$2" dev "$dev"
    ip link set "$dev" up
    n=0
    while [ "$(cat /sys/class/net/$dev/operstate)" != up ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    echo "--- $name: ip addr show $dev"
    ip addr show "$dev"
    echo "VM-RESULT: $name ifup $1 OK: $dev $2 operstate $(cat /sys/class/net/$dev/operstate)"
}

# A TCP stream that lives as long as its connection: the host side sees whether a migration
# broke it (an end of file or a reset) or only paused it.
stream() {
    (
        i=0
        while :; do echo "seq $i"; i=$((i + 1)); sleep 0.1; done | nc "$1" "$2"
        echo "VM-RESULT: $name stream ended"
    ) </dev/null >/dev/console 2>&1 &
    echo "VM-RESULT: $name stream $1:$2 started"
}

links() {
    l=
    for d in /sys/class/net/*; do l="$l ${d##*/}=$(cat "$d/address")"; done
    echo "VM-RESULT: $name links:$l"
}

ping_report "$vm_ping"
if [ "$vm_wait" = 1 ]; then
    # The host drives the rest over the serial console (see qemu-common.sh).
    echo "VM-READY: $name"
    while read -r cmd arg arg2; do
        case $cmd in
            ping) ping_report "$arg" "$arg2" ;;
            arp) ip neigh ;;
            ifup) if_up "$arg" "$arg2" ;;
            links) links ;;
            stream) stream "$arg" "$arg2" ;;
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
    rm -rf "$STAGE"
    echo "$INITRD: $(du -h "$INITRD" | cut -f1) (busybox, ${#MODULES[@]} modules)"
}

# --- build --------------------------------------------------------------------------------------

# Builds the binaries (unless SKIP_BUILD is set) and runs private copies from $DIR: others may
# rebuild target/release while the VMs boot. Sets BIN_<name> (dashes as underscores).
qvm_build() {
    local b args=() rel=${CARGO_TARGET_DIR:-target}/release
    for b in "$@"; do args+=(--bin "$b"); done
    if [ -z "${SKIP_BUILD:-}" ]; then
        say "cargo build --release ${args[*]}"
        cargo build --release "${args[@]}" ||
            die "the build failed (SKIP_BUILD=1 runs the binaries already in target/release)"
    fi
    for b in "$@"; do
        [ -x "$rel/$b" ] || die "$rel/$b is missing (build with: cargo build --release)"
        cp "$rel/$b" "$DIR/$b"
        printf -v "BIN_${b//-/_}" '%s' "$DIR/$b"
        echo "$b: built $(date -r "$rel/$b" '+%F %T')"
    done
}

# The guest kernel and initramfs, and the switch and its control client built: what the
# scripts that run a switch beside VMs start from. Sets BIN and CTL (besides vmlinuz, KVER).
qvm_prepare() {
    qvm_kernel
    say "initramfs"
    qvm_initramfs
    qvm_build dpdk-macvtap dpdk-macvtapctl
    # shellcheck disable=SC2034,SC2154 # BIN/CTL are the callers'; BIN_* set by qvm_build
    BIN=$BIN_dpdk_macvtap CTL=$BIN_dpdk_macvtapctl
}

# --- processes ----------------------------------------------------------------------------------

# Stops the switch with SIGINT (it prints its final counters) and records its exit status.
stop_switch() {
    [ -n "$switch_pid" ] || return 0
    kill -INT "$switch_pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$switch_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$switch_pid" 2>/dev/null; then
        echo "$ME: switch did not stop on SIGINT within 15 s; killing it" >&2
        kill -KILL "$switch_pid" 2>/dev/null || true
    fi
    switch_rc=0
    wait "$switch_pid" 2>/dev/null || switch_rc=$?
    switch_pid=
}

qvm_kill_all() {
    local name
    for name in "${!qemu_pid[@]}"; do
        kill -0 "${qemu_pid[$name]}" 2>/dev/null || continue
        kill -TERM "${qemu_pid[$name]}" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "${qemu_pid[$name]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${qemu_pid[$name]}" 2>/dev/null || true
    done
}

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
            echo "$ME: process $pid ($file) exited while waiting for /$pattern/" >&2
            return 1
        }
        sleep 0.5
    done
    echo "$ME: no /$pattern/ in $file within ${timeout}s" >&2
    return 1
}

size() { stat -c %s "$1"; }

# --- VMs ----------------------------------------------------------------------------------------

# qvm_start NAME MAC IP PING WAIT [QEMU ARG...]: a VM whose first NIC is on $DIR/NAME.sock
# (or $QVM_SOCK, or the tap $QVM_TAP).
qvm_start() {
    local name=$1 mac=$2 ip=$3 ping=$4 wait=$5 fd
    local id=${QVM_ID:-$1} sock=${QVM_SOCK:-$DIR/$1.sock} chr= netdev run=()
    shift 5
    if [ -n "${QVM_TAP:-}" ]; then
        netdev=(-netdev "tap,id=net0,ifname=$QVM_TAP,script=no,downscript=no,vhost=off")
        sock="tap $QVM_TAP"
    else
        if [ -n "${QVM_SOCK_SERVER:-}" ]; then
            # QEMU listens and waits (in netdev set-up) until the switch connects.
            rm -f "$sock"
            chr=,server=on,wait=off
        else
            [ -S "$sock" ] || die "the switch has not created $sock"
        fi
        netdev=(-chardev "socket,id=chr0,path=$sock$chr" -netdev "vhost-user,id=net0,chardev=chr0")
    fi
    [ -z "${QVM_NETNS:-}" ] || run=(ip netns exec "$QVM_NETNS")
    # The serial console reads from a FIFO that stays open read-write on our side, so writing
    # commands never blocks and QEMU never sees end-of-file.
    rm -f "$DIR/$id.con"
    mkfifo "$DIR/$id.con"
    exec {fd}<>"$DIR/$id.con"
    con_fd[$id]=$fd
    # vectors=0: QEMU 7.2 under TCG crashes when the guest driver enables MSI-X on a vhost-user
    # virtio-net-pci; with no vectors the guest falls back to INTx (a tap NIC gets the same, so
    # that the guest's driver runs the same way whatever serves it). romfile=: no iPXE ROM to run.
    "${run[@]}" qemu-system-x86_64 -machine q35,accel="$ACCEL" -cpu max -m "$VM_MEM" -smp 1 \
        -object memory-backend-memfd,id=mem,size="${VM_MEM}M",share=on -numa node,memdev=mem \
        "${netdev[@]}" \
        -device virtio-net-pci,netdev=net0,mac="$mac",vectors=0,romfile="${QVM_NIC_OPTS:-}" \
        -kernel "$vmlinuz" -initrd "$INITRD" \
        -append "console=ttyS0 quiet panic=-1 ipv6.disable=1 vm_name=$name vm_ip=$ip vm_ping=$ping vm_wait=$wait" \
        -nographic -no-reboot "$@" \
        <"$DIR/$id.con" >"$DIR/$id.console" 2>&1 &
    qemu_pid[$id]=$!
    echo "   $id: QEMU pid ${qemu_pid[$id]}, mac $mac, ip $ip/24, NIC on $sock, console $DIR/$id.console"
}

vm_cmd() { printf '%s\n' "$2" >&"${con_fd[$1]}"; }

# The console without kernel messages, and without SeaBIOS's terminal escapes (ESC [ ... letter,
# ESC c).
qvm_console() {
    tr -d '\r' <"$DIR/$1.console" | sed -E $'s/\x1b\\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' |
        grep -vE '^\[ *[0-9]+\.[0-9]+\]' | sed "s/^/   $1| /"
}
