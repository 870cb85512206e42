#!/usr/bin/env bash
# Attaches a libvirt-managed VM to dpdk-macvtap over vhost-user, end to end, with one command
# (as root, Debian 12; systemd need not be PID 1):
#   bash dpdk-config/libvirt-vm.sh
#
#   PREFIX-sw: dpdk-macvtap --control DIR/control.sock, uplink mvtup0   <- DIR/vhost/vm{1,2}.sock ->  libvirt domains
#   PREFIX-br: Linux bridge br0 (hairpin on)
#   PREFIX-ext: the external host, ext0 = 10.77.0.1/24
#
# Two roles, one after the other, on one switch (guests file: vm1 and vm2):
#   server  vm1: the switch is the vhost-user server (vhost = "server", owner = "libvirt-qemu",
#           group = "kvm": libvirt's QEMU runs as libvirt-qemu and connects to the switch's
#           socket); the domain has <source mode='client'> with <reconnect timeout='10'/>
#   client  vm2: the switch is the client (vhost = "client", queues = 2); the domain has
#           <source mode='server'> and <driver queues='2'/> (2 vCPUs, so the guest enables both
#           queue pairs). libvirt 9.0 refuses <reconnect> with mode='server', so it has none;
#           QEMU creates this socket as libvirt-qemu, so DIR/vhost belongs to libvirt-qemu:kvm.
# In both roles `virsh start` returns only once the switch serves the socket: QEMU waits for
# the vhost-user connection before it starts the guest. The TCG crash workaround of qemu-vm.sh
# (virtio-net-pci vectors=0) is a <qemu:override> of the device's property (see the template).
# For each role: the domain (dpdk-config/libvirt/domain.xml.in) is defined and started, the
# switch reports "guest NAME: link up", the VM pings the external host through the switch and
# the lab's bridge, `dpdk-macvtapctl guest-list` shows the link up; then the switch is
# restarted under the running VM (RESTART=1): the link comes back (QEMU reconnects in role
# server, the switch in role client) and the VM pings again; then the VM powers off, the
# domain is undefined, and at the end the switch stops with exit status 0 and no mbuf leaked.
#
# libvirt runs privately: libvirtd and virtlogd are started by hand (no systemd) in a mount
# namespace of their own where DIR/libvirt/{etc,run,lib,log,cache} are bound over
# /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt, so
# the host's libvirt configuration and state are never touched; virsh reaches the daemon
# through DIR/libvirt/run/libvirt-sock. Debian 12 ships the monolithic libvirtd (no
# virtqemud). The VM is the one qemu-vm.sh boots (qemu-common.sh: Debian kernel, busybox
# initramfs, commands over the serial console, here a pipe chardev on two FIFOs).
#
# Exits 0 only if every expectation held. Logs stay in DIR (switch*.log, vm*.console, vm*.xml,
# libvirt/log/libvirtd.log, libvirt/log/qemu/vm*.log); domains, daemons, processes,
# namespaces, sockets and DPDK runtime files are removed on exit, on failure too.
#
#   ROLES="server client" (default; either alone works)   RESTART=1 (0: no switch restart)
#   PREFIX=lvm   DIR=/tmp/libvirt-vm   VM_MEM=512 (MB)   BOOT_TIMEOUT=300 (s; TCG is slow)
#   QUEUES_SERVER=1 QUEUES_CLIENT=2 (queue pairs of vm1 / vm2, 1..8)
#   KERNEL_DIR=/tmp/qemu-vm/root (the guest kernel, shared with qemu-vm.sh's cache)
#   SKIP_BUILD=1   CLEAN_CACHE=1 (re-fetch the kernel)   TEMPLATE=FILE (another domain template)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ME=libvirt-vm
PREFIX=${PREFIX:-lvm}
DIR=${DIR:-/tmp/libvirt-vm}
VM_MEM=${VM_MEM:-512}
FILE_PREFIX=libvirtvm
KERNEL_DIR=${KERNEL_DIR:-/tmp/qemu-vm/root}
ROLES=${ROLES:-server client}
RESTART=${RESTART:-1}
EXT_IP=10.77.0.1
TEMPLATE=${TEMPLATE:-dpdk-config/libvirt/domain.xml.in}
LV=$DIR/libvirt
LV_URI="qemu:///system?socket=$LV/run/libvirt-sock"
# Who libvirt's QEMU runs as (Debian's default user; pinned in the private qemu.conf), and so
# who must be able to connect to the sockets the switch creates.
QEMU_USER=libvirt-qemu
QEMU_GROUP=kvm
declare -A ROLE_VM=([server]=vm1 [client]=vm2)
declare -A VM_MAC=([vm1]=52:54:00:00:00:01 [vm2]=52:54:00:00:00:02)
declare -A VM_IP=([vm1]=10.77.0.11 [vm2]=10.77.0.12)
declare -A VM_QUEUES=([vm1]=${QUEUES_SERVER:-1} [vm2]=${QUEUES_CLIENT:-2})
# shellcheck source=dpdk-config/lab.sh
. dpdk-config/lab.sh
# shellcheck source=dpdk-config/qemu-common.sh
. dpdk-config/qemu-common.sh

[ "$(id -u)" -eq 0 ] || die "run as root (network namespaces, DPDK, apt, libvirtd)"
for role in $ROLES; do
    case $role in server | client) ;; *) die "ROLES: '$role' is neither server nor client" ;; esac
done
for name in vm1 vm2; do
    case ${VM_QUEUES[$name]} in [1-8]) ;; *) die "queues of $name must be 1..8, not '${VM_QUEUES[$name]}'" ;; esac
done
[ -f "$TEMPLATE" ] || die "$TEMPLATE is missing"

# --- 1. packages, kernel, initramfs, build -------------------------------------------------------

say "packages"
qvm_packages libvirt-daemon-system libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
echo "$(libvirtd --version); $(virsh --version | sed 's/^/virsh /')"
for d in libvirtd virtlogd; do command -v "$d" >/dev/null || die "$d is not installed"; done
mkdir -p "$DIR"
chmod 755 "$DIR" # libvirt's QEMU (not root) opens the kernel, initramfs and console FIFOs in here
# The vhost-user sockets. With vhost = "client" QEMU creates the socket (mode='server'), as the
# QEMU user, and libvirt 9.0 does not create it for QEMU: the directory must be that user's.
SOCK_DIR=$DIR/vhost
mkdir -p "$SOCK_DIR"
chown "$QEMU_USER:$QEMU_GROUP" "$SOCK_DIR"
chmod 750 "$SOCK_DIR"
qvm_prepare
# libvirt chowns the kernel and initramfs to the QEMU user while the VM runs: use private
# copies, not the cache shared with qemu-vm.sh.
KERNEL=$DIR/vmlinuz
cp "$vmlinuz" "$KERNEL"

# --- cleanup ------------------------------------------------------------------------------------

defined=()
declare -A reader_pid=()

vsh() { virsh -c "$LV_URI" "$@"; }
lv_alive() { [ -S "$LV/run/libvirt-sock" ] && vsh version >/dev/null 2>&1; }

# Stops a daemon we started, by the pid in its pid file (after checking it is that daemon).
stop_daemon() {
    local name=$1 pidfile=$LV/$1.pid pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$ME: $name (pid $pid) did not stop on SIGTERM within 15 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

# Any QEMU our libvirtd spawned that is still there: one still waiting for its vhost-user peer
# when `virsh start` gave up is neither running nor destroyable yet (libvirt's pid files).
kill_qemus() {
    local f pid
    for f in "$LV"/run/qemu/*.pid; do
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        case $(cat "/proc/$pid/comm" 2>/dev/null) in qemu-system-*) ;; *) continue ;; esac
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
}

lv_stop() {
    stop_daemon libvirtd
    stop_daemon virtlogd
    # The mount namespace went with its last process; what the daemons left is ours to remove
    # (the logs and the capabilities cache stay).
    rm -rf "${LV:?}/etc" "${LV:?}/run" "${LV:?}/lib"
    if [ -e "$LV/made-run-libvirt" ]; then
        rmdir /run/libvirt 2>/dev/null || true
        rm -f "$LV/made-run-libvirt"
    fi
}

# Idempotent: run before the summary (so it can report) and again by the EXIT trap.
release() {
    local name
    if [ ${#defined[@]} -gt 0 ] && lv_alive; then
        for name in "${defined[@]}"; do
            if [ "$(vsh domstate "$name" 2>/dev/null)" = running ]; then vsh destroy "$name" >/dev/null 2>&1 || true; fi
            vsh undefine "$name" >/dev/null 2>&1 || true
        done
    fi
    defined=()
    qvm_kill_all # QEMU processes libvirt could not destroy
    kill_qemus
    for name in "${!reader_pid[@]}"; do kill "${reader_pid[$name]}" 2>/dev/null || true; done
    reader_pid=()
    stop_switch
    lv_stop
    lab_down "$PREFIX"
    rm -f "$SOCK_DIR"/*.sock "$DIR"/*.serial.in "$DIR"/*.serial.out "$DIR/control.sock"
    rm -rf "/var/run/dpdk/$FILE_PREFIX"
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
pass() { report+=("PASS  $*"); echo "   -> PASS: $*"; }
fail() { report+=("FAIL  $*"); failures+=("$*"); echo "   -> FAIL: $*"; return 1; }
# Runs a command, shows it (vsh as virsh, ctl as dpdk-macvtapctl) and its indented output (stdout and stderr); keeps its exit status.
show() {
    local rc=0 out
    local shown=("$@")
    shown=("${shown[@]/#vsh/virsh}")
    shown=("${shown[@]/#ctl/dpdk-macvtapctl}")
    echo "   \$ ${shown[*]}"
    out=$("$@" 2>&1) || rc=$?
    [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/   | /'
    return "$rc"
}
ctl() { "$CTL" --control "$DIR/control.sock" "$@"; }
sock_info() { if [ -e "$1" ]; then stat -c '%F %U:%G %a' "$1"; else echo "absent"; fi; }
# Waits until `virsh domstate NAME` says STATE, for up to TIMEOUT seconds.
wait_state() {
    local name=$1 want=$2 deadline=$((SECONDS + $3)) st=
    while [ $SECONDS -lt "$deadline" ]; do
        st=$(vsh domstate "$name" 2>/dev/null || true)
        [ "$st" = "$want" ] && return 0
        sleep 0.5
    done
    echo "$ME: domain $name is '$st', not '$want', after $3 s" >&2
    return 1
}

# --- 2. private libvirt daemons -----------------------------------------------------------------

lv_start() {
    # What an interrupted run may have left (daemons, QEMUs, state).
    kill_qemus
    lv_stop
    rm -rf "${LV:?}/etc" "${LV:?}/run" "${LV:?}/lib" "${LV:?}/log"
    mkdir -p "$LV"/{etc,run,lib,log,cache}
    cat >"$LV/etc/libvirtd.conf" <<'EOF'
# libvirt-vm.sh's private libvirtd (paths as seen inside its mount namespace)
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
    cat >"$LV/etc/virtlogd.conf" <<'EOF'
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
EOF
    cat >"$LV/etc/qemu.conf" <<EOF
# libvirt-vm.sh's private qemu.conf. QEMU runs unprivileged, as Debian's default user; the
# switch gives its sockets to that user (guest entry: owner = "$QEMU_USER", group = "$QEMU_GROUP").
user = "$QEMU_USER"
group = "$QEMU_GROUP"
EOF
    # The mount point of the private run directory: removed at the end if it is ours.
    if [ ! -d /run/libvirt ]; then
        mkdir /run/libvirt
        touch "$LV/made-run-libvirt"
    fi
    # The daemons daemonize inside the namespace; it lives as long as they (and their QEMUs) do.
    # shellcheck disable=SC2016 # $1 is the inner shell's
    unshare --mount --propagation private -- sh -ec '
        lv=$1
        mount --bind "$lv/etc" /etc/libvirt
        mount --bind "$lv/run" /run/libvirt
        mount --bind "$lv/lib" /var/lib/libvirt
        mount --bind "$lv/log" /var/log/libvirt
        mount --bind "$lv/cache" /var/cache/libvirt
        virtlogd --daemon --pid-file "$lv/virtlogd.pid"
        libvirtd --daemon --pid-file "$lv/libvirtd.pid"
    ' sh "$LV"
    # The first connection waits for the driver to start (and to probe QEMU's capabilities,
    # cached in $LV/cache between runs).
    local deadline=$((SECONDS + 90))
    until lv_alive; do
        [ $SECONDS -lt $deadline ] || die "libvirtd did not answer on $LV/run/libvirt-sock within 90 s; its log:
$(tail -n 20 "$LV/log/libvirtd.log" 2>/dev/null)"
        sleep 0.5
    done
    echo "   libvirtd pid $(cat "$LV/libvirtd.pid"), virtlogd pid $(cat "$LV/virtlogd.pid"), URI $LV_URI"
    show vsh version
}

# --- 3. lab and switch --------------------------------------------------------------------------

guest_entry() {
    local name=$1 role=$2
    printf '[[guest]]\nname = "%s"\nmac = "%s"\nsocket = "%s"\nvhost = "%s"\nqueues = %s\n' \
        "$name" "${VM_MAC[$name]}" "$SOCK_DIR/$name.sock" "$role" "${VM_QUEUES[$name]}"
    if [ "$role" = server ]; then
        printf 'owner = "%s"\ngroup = "%s"\nsocket_mode = "0660"\n' "$QEMU_USER" "$QEMU_GROUP"
    fi
    echo
}

switch_log=
# start_switch LOG: the switch in PREFIX-sw; waits for "forwarding".
start_switch() {
    switch_log=$1
    rm -f "$switch_log"
    ip netns exec "$PREFIX-sw" "$BIN" --no-huge -m 1024 --no-pci --file-prefix="$FILE_PREFIX" -l 0-1 \
        --vdev=net_af_packet0,iface=mvtup0 \
        -- --port 0 --guests "$DIR/guests.toml" --stats-interval 5 --stats-json "$DIR/stats.json" \
        --control "$DIR/control.sock" \
        >"$switch_log" 2>&1 &
    switch_pid=$!
    if ! wait_line "$switch_log" 0 'dpdk-macvtap: forwarding' 60 "$switch_pid" >/dev/null; then
        grep -v VHOST_CONFIG "$switch_log" | tail -n 30 | sed 's/^/   switch| /'
        return 1
    fi
}

# --- 4. one role --------------------------------------------------------------------------------

# The domain XML for NAME in ROLE, from the template.
render() {
    local name=$1 role=$2 q=${VM_QUEUES[$1]} xml mode children='' driver='' cmdline
    xml=$(<"$TEMPLATE")
    if [ "$role" = server ]; then
        mode=client
        children="<reconnect enabled='yes' timeout='10'/>"
    else
        mode=server
    fi
    [ "$q" -gt 1 ] && driver="<driver queues='$q'/>"
    cmdline="console=ttyS0 quiet panic=-1 ipv6.disable=1 vm_name=$name vm_ip=${VM_IP[$name]} vm_ping=$EXT_IP vm_wait=1"
    xml=${xml//@NAME@/"$name"}
    xml=${xml//@MEM_MB@/"$VM_MEM"}
    xml=${xml//@VCPUS@/"$q"}
    xml=${xml//@KERNEL@/"$KERNEL"}
    xml=${xml//@INITRD@/"$INITRD"}
    xml=${xml//@CMDLINE@/"$cmdline"}
    xml=${xml//@MAC@/"${VM_MAC[$name]}"}
    xml=${xml//@SOCKET@/"$SOCK_DIR/$name.sock"}
    xml=${xml//@SOURCE_MODE@/"$mode"}
    xml=${xml//@SOURCE_CHILDREN@/"$children"}
    xml=${xml//@DRIVER@/"$driver"}
    xml=${xml//@SERIAL@/"$DIR/$name.serial"}
    # The template's leading comment documents the placeholders; the domain starts after it
    # (an element left out leaves an empty line, dropped too).
    printf '%s\n' "$xml" | sed -n '/^<domain /,$p' | sed '/^[[:space:]]*$/d'
}

# The serial console: QEMU's pipe chardev reads NAME.serial.in and writes NAME.serial.out. We
# hold .in open read-write (commands never block, QEMU never sees end-of-file) and copy .out to
# NAME.console. The copier opens .out read-write too: libvirtd opens and closes the FIFOs while
# it starts the domain, and a plain reader would take that for end-of-file and quit before
# QEMU wrote anything.
console_open() {
    local name=$1 fd
    rm -f "$DIR/$name.serial.in" "$DIR/$name.serial.out" "$DIR/$name.console"
    mkfifo "$DIR/$name.serial.in" "$DIR/$name.serial.out"
    exec {fd}<>"$DIR/$name.serial.in"
    con_fd[$name]=$fd
    : >"$DIR/$name.console"
    cat <>"$DIR/$name.serial.out" >>"$DIR/$name.console" &
    reader_pid[$name]=$!
}

# What QEMU (and libvirt about it) logged after its command line, for failures.
qemu_said() {
    local qlog=$LV/log/qemu/$1.log
    echo "   virsh domstate --reason $1: $(vsh domstate "$1" --reason 2>&1 | head -n1)"
    echo "   $qlog after the command line:"
    sed -n '/^-msg timestamp/,$p' "$qlog" 2>/dev/null | tail -n +2 | tail -n 20 | sed 's/^/   | /' || true
}

vm_result() { wait_line "$DIR/$1.console" "$2" "$3" "${4:-120}" "${qemu_pid[$1]}"; }

# vm_ping NAME: one more ping of the external host from the VM's command loop; prints its
# VM-RESULT line (the whole exchange is in the console dump at the end).
vm_ping() {
    local name=$1 off r
    off=$(size "$DIR/$name.console")
    vm_cmd "$name" "ping $EXT_IP"
    r=$(vm_result "$name" "$off" "VM-RESULT: $name ping $EXT_IP " 120) || return 1
    vm_result "$name" "$off" "VM-READY: $name" 30 >/dev/null || true
    printf '%s\n' "$r"
}

run_role() {
    local role=$1 name=${ROLE_VM[$1]} t0=$SECONDS off r qlog pid
    local sock=$SOCK_DIR/$name.sock
    say "role $role: $name, the switch is the vhost-user $role (guest entry: vhost = \"$role\", queues = ${VM_QUEUES[$name]})"
    render "$name" "$role" >"$DIR/$name.xml"
    echo "   domain XML ($DIR/$name.xml):"
    sed 's/^/   | /' "$DIR/$name.xml"
    console_open "$name"

    if [ "$role" = client ]; then
        # What README.md's libvirt section suggests for this role: libvirt 9.0 refuses it.
        sed "s|mode='server'>|&<reconnect enabled='yes' timeout='10'/>|" "$DIR/$name.xml" >"$DIR/$name-reconnect.xml"
        echo "   the same domain with <reconnect enabled='yes' timeout='10'/> in its mode='server' <source>:"
        if show vsh define "$DIR/$name-reconnect.xml"; then
            echo "   (libvirt accepted it)"
            vsh undefine "$name" >/dev/null
        else
            echo "   (refused: the domain goes without <reconnect>; the switch reconnects by itself)"
        fi
    fi
    echo "   socket $sock before the domain starts: $(sock_info "$sock")"
    show vsh define "$DIR/$name.xml" || { fail "$role: virsh define refused $name"; return 1; }
    defined+=("$name")
    off=$(size "$switch_log")
    # In both roles QEMU waits for the vhost-user connection before it runs the guest (as a
    # client it retries every <reconnect timeout> s; as a server it waits for the switch, which
    # retries by itself), so `virsh start` returns only once the switch is there.
    if ! show timeout 120 virsh -c "$LV_URI" start "$name"; then
        qemu_said "$name"
        fail "$role: virsh start $name failed (QEMU waits for the vhost-user connection before it starts: is the switch serving $sock?)"
        return 1
    fi
    wait_state "$name" running 60 || { fail "$role: $name is not running"; return 1; }
    pid=$(cat "$LV/run/qemu/$name.pid")
    qemu_pid[$name]=$pid
    echo "   virsh domstate $name: $(vsh domstate "$name"); QEMU pid $pid runs as $(ps -o user=,group= -p "$pid" | xargs) (supplementary: $(awk '/^Groups:/ {$1=""; print}' "/proc/$pid/status" | xargs))"
    qlog=$LV/log/qemu/$name.log
    echo "   what libvirt gave QEMU for the NIC and the console ($qlog):"
    sed -n '1,/^-msg timestamp/p' "$qlog" | tr ' ' '\n' | grep -A1 -E '^-(chardev|netdev|device|object)$' | grep -vE '^-(-|chardev|netdev|device|object)$' |
        grep -E 'vhost|charnet|net0|dpdk0|serial|memfd' | sed 's/^/   | /' || true
    echo "   socket $sock once QEMU runs: $(sock_info "$sock")"
    show vsh domiflist "$name" || true

    say "role $role: waiting for the guest's driver (switch: guest $name: link up) and its ping of $EXT_IP (TCG: up to ${BOOT_TIMEOUT}s)"
    if ! r=$(wait_line "$switch_log" "$off" "guest $name: link up" "$BOOT_TIMEOUT" "$pid"); then
        qemu_said "$name"
        fail "$role: the switch never saw $name's link come up"
        return 1
    fi
    echo "   switch| $r (after $((SECONDS - t0))s)"
    if ! r=$(vm_result "$name" 0 "VM-RESULT: $name ping $EXT_IP " "$BOOT_TIMEOUT"); then
        qemu_said "$name"
        fail "$role: $name gave no ping result for $EXT_IP (see $DIR/$name.console)"
        return 1
    fi
    echo "   $r (after $((SECONDS - t0))s)"
    case $r in *" OK:"*) ;; *) fail "$role: $r"; return 1 ;; esac
    vm_result "$name" 0 "VM-READY: $name" 60 >/dev/null || { fail "$role: $name does not take commands"; return 1; }
    show ctl guest-list
    ctl guest-list | grep -qE "^$name .* up " || { fail "$role: guest-list does not show $name up"; return 1; }
    show ctl guest-show "$name"
    pass "$role: $name booted under libvirt, link up, $r"

    if [ "$RESTART" = 1 ]; then
        say "role $role: restarting the switch under the running VM"
        off=$(size "$switch_log")
        stop_switch
        tail -c +"$((off + 1))" "$switch_log" | grep -E "guest $name: link|^(final|mempool)" | sed 's/^/   switch| /'
        [ "$switch_rc" = 0 ] || fail "$role: the switch exited with status $switch_rc when stopped" || true
        echo "   socket $sock with the switch stopped: $(sock_info "$sock"); domain: $(vsh domstate "$name")"
        local t1=$SECONDS
        start_switch "$DIR/switch-restart-$role.log" || { fail "$role: the switch did not start again"; return 1; }
        echo "   socket $sock after the switch restarted: $(sock_info "$sock")"
        if ! r=$(wait_line "$switch_log" 0 "guest $name: link up" 90 "$switch_pid"); then
            fail "$role: after the restart the switch never saw $name's link come up (90 s)"
            return 1
        fi
        local back=$((SECONDS - t1))
        echo "   switch| $r (${back}s after the restart)"
        r=$(vm_ping "$name") || { fail "$role: no ping result after the restart"; return 1; }
        echo "   $r"
        case $r in *" OK:"*) ;; *) fail "$role: after the restart: $r"; return 1 ;; esac
        show ctl guest-list
        grep -F "($sock)" "$switch_log" | grep -E '(socket created|reconnecting|new device,|ready for processing)' | sed 's/^/   switch| /' || true
        echo "   what QEMU logged meanwhile ($qlog):"
        sed -n '/^-msg timestamp/,$p' "$qlog" | tail -n +2 | grep -v 'tainted' | sed 's/^/   | /' || true
        pass "$role: switch restarted, $name's link back ${back}s after, $r"
    fi

    say "role $role: powering $name off, undefining the domain"
    off=$(size "$switch_log")
    vm_cmd "$name" off
    wait_line "$DIR/$name.console" 0 "VM-DONE: $name" 60 "$pid" >/dev/null || fail "$role: $name did not power off" || true
    if wait_state "$name" "shut off" 60; then
        echo "   virsh domstate $name: $(vsh domstate "$name" --reason)"
    else
        fail "$role: $name did not shut off" || true
        vsh destroy "$name" >/dev/null 2>&1 || true
    fi
    unset "qemu_pid[$name]"
    # QEMU is gone and VM-DONE was read: what it wrote is in the console file.
    kill "${reader_pid[$name]}" 2>/dev/null || true
    wait "${reader_pid[$name]}" 2>/dev/null || true
    unset "reader_pid[$name]"
    r=$(wait_line "$switch_log" "$off" "guest $name: link down" 30 "$switch_pid") && echo "   switch| $r" ||
        fail "$role: the switch did not see $name's link go down" || true
    echo "   socket $sock after the VM is gone: $(sock_info "$sock")"
    show vsh undefine "$name" || fail "$role: virsh undefine $name failed" || true
    forget "$name"
    echo "   role $role took $((SECONDS - t0))s"
}

# forget NAME: the domain is undefined; its console FIFO is closed.
forget() {
    local name=$1 d keep=() fd=${con_fd[$1]:-}
    for d in ${defined[@]+"${defined[@]}"}; do [ "$d" = "$name" ] || keep+=("$d"); done
    defined=(${keep[@]+"${keep[@]}"})
    if [ -n "$fd" ]; then exec {fd}>&-; fi
    unset "con_fd[$name]"
}

# --- the run ------------------------------------------------------------------------------------

say "private libvirt: libvirtd + virtlogd in their own mount namespace, state in $LV"
lv_start

say "lab: $PREFIX-sw (uplink mvtup0) / $PREFIX-br (br0, hairpin on) / $PREFIX-ext (ext0 = $EXT_IP/24)"
lab_up "$PREFIX"
lab_hairpin "$PREFIX" on
ip -n "$PREFIX-ext" addr add "$EXT_IP/24" dev ext0

rm -f "$SOCK_DIR"/*.sock "$DIR"/*.console "$DIR"/switch*.log "$DIR/stats.json"
for role in $ROLES; do guest_entry "${ROLE_VM[$role]}" "$role"; done >"$DIR/guests.toml"
say "starting dpdk-macvtap in $PREFIX-sw with $DIR/guests.toml"
sed 's/^/   | /' "$DIR/guests.toml"
start_switch "$DIR/switch.log" || die "dpdk-macvtap did not start forwarding"
grep -v VHOST_CONFIG "$switch_log" | sed 's/^/   switch| /' || true

for role in $ROLES; do
    if ! run_role "$role"; then
        name=${ROLE_VM[$role]}
        echo "   (role $role stopped at its first failure: destroying and undefining $name)"
        vsh destroy "$name" >/dev/null 2>&1 || true
        kill_qemus
        vsh undefine "$name" >/dev/null 2>&1 || true
        forget "$name"
        unset "qemu_pid[$name]"
        # The switch may have been stopped in the middle of the restart.
        [ -n "$switch_pid" ] || start_switch "$DIR/switch-after-$role.log" || die "the switch did not start again"
    fi
done

say "stopping the switch"
off=$(size "$switch_log")
stop_switch
tail -c +"$((off + 1))" "$switch_log" | grep -vE '^stats:|VHOST_CONFIG' | sed 's/^/   switch| /' || true
echo "   switch exit status: $switch_rc"
[ "$switch_rc" = 0 ] || fail "dpdk-macvtap exited with status $switch_rc" || true
grep -q '^mempool in use at exit: 0 ' "$switch_log" || fail "no 'mempool in use at exit: 0' in $switch_log" || true
alarms=$(grep -inE '(^|[^a-z])(error|panic|warn|fail|leak)' "$DIR"/switch*.log | grep -vE -- '-FAILED: 0$' || true)
if [ -n "$alarms" ]; then
    echo "   errors/warnings in the switch logs:"
    printf '%s\n' "$alarms" | sed 's/^/   | /'
fi

# --- cleanup and report -------------------------------------------------------------------------

say "cleanup"
release
leftovers=
for ns in "$PREFIX-sw" "$PREFIX-br" "$PREFIX-ext"; do [ -e "/var/run/netns/$ns" ] && leftovers+=" netns $ns"; done
[ -e "/var/run/dpdk/$FILE_PREFIX" ] && leftovers+=" /var/run/dpdk/$FILE_PREFIX"
for s in "$SOCK_DIR"/*.sock "$DIR/control.sock" "$LV/run" "$LV/libvirtd.pid" "$LV/virtlogd.pid"; do [ -e "$s" ] && leftovers+=" $s"; done
if [ -n "$leftovers" ]; then fail "left behind:$leftovers" || true; fi
echo "   domains undefined, libvirtd and virtlogd stopped, namespaces $PREFIX-{sw,br,ext}, sockets, FIFOs and /var/run/dpdk/$FILE_PREFIX: ${leftovers:-all gone}"

for role in $ROLES; do
    say "${ROLE_VM[$role]} console (without kernel messages)"
    qvm_console "${ROLE_VM[$role]}"
done

say "summary"
logs=("$DIR/switch.log")
for role in $ROLES; do logs+=("$DIR/switch-restart-$role.log" "$DIR/switch-after-$role.log"); done
for log in "${logs[@]}"; do
    [ -f "$log" ] || continue
    grep -E 'guest vm[0-9]+: link (up|down)' "$log" | sed "s#^#   ${log##*/}| #" || true
done
printf '   %s\n' "${report[@]}"
echo "   logs: $DIR/switch*.log, $DIR/vm*.console, $LV/log/libvirtd.log, $LV/log/qemu/; total time: $((SECONDS - T0))s"
if [ ${#failures[@]} -gt 0 ]; then
    echo "   FAIL (${#failures[@]} failure(s))"
    exit 1
fi
echo "   PASS"
