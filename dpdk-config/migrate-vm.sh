#!/usr/bin/env bash
# Live migration of a running QEMU VM between two dpdk-macvtap "hosts", there and back, with
# one command (as root, Debian 12):
#   bash dpdk-config/migrate-vm.sh
#
#   PREFIX-sw  (host A): dpdk-macvtap, uplink mvtup0 --veth-- mvtup0-br \
#   PREFIX-swb (host B): dpdk-macvtap, uplink mvtup0 --veth-- mvtupb-br -[br0 in PREFIX-br]- ext0-br --veth-- ext0 (PREFIX-ext, 10.77.0.1)
#
# Both switches serve the same guest (name vm, MAC 52:54:00:00:00:01) on their own socket
# ($DIR/a/vm.sock, $DIR/b/vm.sock); the bridge reflects (hairpin) on both uplink ports. The VM
# boots on A (TCG, the Debian kernel's virtio-net driver, a busybox initramfs: qemu-common.sh),
# then opens a TCP stream to the external host (10 lines a second) while the external host pings
# it (10 a second). A destination QEMU waits on B with -incoming; QMP `migrate` moves the VM to
# B, the source QEMU quits; then the same from B back to A.
#
# It reports, for each direction: QEMU's total migration time and downtime, the pings lost
# around the switch-over, how long the stream stalled, the bridge's FDB entry for the VM's MAC
# before and after (it must move to the destination's uplink port), which announce came out of
# the destination's uplink (the guest's own gratuitous ARP with VIRTIO_NET_F_GUEST_ANNOUNCE,
# or the RARP the vhost library injects on VHOST_USER_SEND_RARP) and each switch's link lines;
# at the end, whether the TCP stream survived both moves, both switches' counters, their exit
# status and their mbuf leak check.
#
# Exits 0 only if: both migrations completed, the stream survived with no gap in its lines,
# the FDB followed the VM each time, at most MAX_LOST pings were lost per migration, and both
# switches exited 0 with every mbuf back in the pool.
#
#   ROLE=server|client (default server): the switches' vhost-user role (client: QEMU creates
#       the socket with server=on, the switch connects and reconnects)
#   ANNOUNCE=guest|rarp (default guest): rarp gives the VM guest_announce=off, so that QEMU
#       asks the backend for a RARP (VHOST_USER_SEND_RARP) instead of the guest announcing
#   NIC=vhost|tap (default vhost): tap is the control experiment for what breaks a guest after a
#       move: the same VM (same virtio-net-pci device, same guest driver, same announce, same TCG)
#       but its NIC served by QEMU itself, in userspace, on a tap in the bridge's namespace
#       (vmtapa for host A, vmtapb for B; QEMU runs there) instead of by the switch over
#       vhost-user. The switches still run (nothing attached, ROLE unused), so that the machine
#       is as loaded as with vhost; the pings, the stream, the announce and the FDB are checked
#       the same way, on the tap's bridge port instead of the host's uplink port.
#   MEMCHECK=1: after each move, before the destination runs, compares the guest's memory on
#       both sides page by page (QMP pmemsave of the stopped source and of the destination,
#       started with -S and let go with `cont` afterwards) and reports the pages that differ:
#       any is a page the migration lost, whoever wrote it. The dumps pause the guest for
#       seconds, so pings lost and the pause say nothing in this mode (MAX_LOST is not checked).
#   DOWNTIME_LIMIT=50 (ms, QEMU's downtime-limit: the stop-and-copy phase starts once the dirty
#       memory left would go in that long; QEMU's default, 300, leaves more to copy while paused)
#   PREFIX=mig   DIR=/tmp/migrate-vm   VM_MEM=256 (MB)   MAX_LOST=3   BOOT_TIMEOUT=300
#   SKIP_BUILD=1   CLEAN_CACHE=1   ACCEL=tcg
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ME=migrate-vm
ROLE=${ROLE:-server}
ANNOUNCE=${ANNOUNCE:-guest}
NIC=${NIC:-vhost}
PREFIX=${PREFIX:-mig}
DIR=${DIR:-/tmp/migrate-vm}
VM_MEM=${VM_MEM:-256}
MAX_LOST=${MAX_LOST:-3}
DOWNTIME_LIMIT=${DOWNTIME_LIMIT:-50}
MEMCHECK=${MEMCHECK:-}
[ -z "$MEMCHECK" ] || MAX_LOST=1000000
# With PREFIX in it, two runs with different PREFIX and DIR can share the machine.
FILE_PREFIX=migrate-$PREFIX
EXT_IP=10.77.0.1
VM_IP=10.77.0.11
VM_MAC=52:54:00:00:00:01
STREAM_PORT=5001
declare -A HOST_NS=([a]=$PREFIX-sw [b]=$PREFIX-swb) BR_PORT=([a]=mvtup0-br [b]=mvtupb-br)
# shellcheck source=dpdk-config/lab.sh
. dpdk-config/lab.sh
# shellcheck source=dpdk-config/qemu-common.sh
. dpdk-config/qemu-common.sh

[ "$(id -u)" -eq 0 ] || die "run as root (network namespaces, DPDK, apt)"
case $ROLE in server | client) ;; *) die "ROLE must be server or client, not '$ROLE'" ;; esac
case $ANNOUNCE in
    guest) NIC_OPTS= ;;
    rarp) NIC_OPTS=,guest_announce=off ;;
    *) die "ANNOUNCE must be guest or rarp, not '$ANNOUNCE'" ;;
esac
case $NIC in
    vhost) ;;
    tap) BR_PORT=([a]=vmtapa [b]=vmtapb) ;;
    *) die "NIC must be vhost or tap, not '$NIC'" ;;
esac
PY=/usr/bin/python3

# --- 1. packages, kernel, initramfs, build --------------------------------------------------------

say "packages"
qvm_packages tcpdump ethtool iputils-ping
mkdir -p "$DIR/a" "$DIR/b"
qvm_prepare

# --- cleanup --------------------------------------------------------------------------------------

declare -A sw_pid=()
aux_pids=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    qvm_kill_all
    for p in "${aux_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for h in a b; do
        switch_pid=${sw_pid[$h]:-}
        stop_switch
    done
    wait 2>/dev/null || true
    lab_down "$PREFIX"
    [ -e "/var/run/netns/$PREFIX-swb" ] && ip netns del "$PREFIX-swb"
    rm -f "$DIR"/*/*.sock "$DIR"/*.sock "$DIR"/*.qmp "$DIR"/*.con "$DIR"/*.mem
    rm -rf "/var/run/dpdk/$FILE_PREFIX-a" "/var/run/dpdk/$FILE_PREFIX-b"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 2. lab: two hosts on one bridge ----------------------------------------------------------------

say "lab: $PREFIX-sw (host A) and $PREFIX-swb (host B), each with uplink mvtup0, into br0 in $PREFIX-br (hairpin on both ports)"
lab_up "$PREFIX"
[ -e "/var/run/netns/$PREFIX-swb" ] && ip netns del "$PREFIX-swb"
_lab_ns "$PREFIX-swb"
ip -n "$PREFIX-swb" link add mvtup0 type veth peer name mvtupb-br netns "$PREFIX-br"
ip -n "$PREFIX-br" link set mvtupb-br master br0
ip -n "$PREFIX-br" link set mvtupb-br up
ip -n "$PREFIX-swb" link set mvtup0 up
_lab_wait_carrier "$PREFIX-swb" mvtup0
lab_hairpin "$PREFIX" on
ip netns exec "$PREFIX-br" bridge link set dev mvtupb-br hairpin on
ip -n "$PREFIX-ext" addr add "$EXT_IP/24" dev ext0
# A veth leaves TCP checksums to "the hardware" (CHECKSUM_PARTIAL), and net_af_packet hands the
# frame to the switch as it is: the guest, which negotiated no checksum offload, would drop every
# segment from the external host. A real NIC completes them on the wire; here the sender must.
ip netns exec "$PREFIX-ext" ethtool -K ext0 tx off >/dev/null
if [ "$NIC" = tap ]; then
    for h in a b; do
        ip netns exec "$PREFIX-br" ip tuntap add dev "${BR_PORT[$h]}" mode tap
        ip -n "$PREFIX-br" link set "${BR_PORT[$h]}" master br0
        ip -n "$PREFIX-br" link set "${BR_PORT[$h]}" up
    done
    echo "   NIC=tap: the VM's NIC on ${BR_PORT[a]} (host A) / ${BR_PORT[b]} (host B) in br0, served by QEMU"
fi

# start_switch HOST: dpdk-macvtap in HOST's namespace, serving vm on $DIR/HOST/vm.sock.
start_switch() {
    local h=$1 d=$DIR/$1
    rm -f "$d/switch.log" "$d/stats.json" "$d/vm.sock"
    printf '[[guest]]\nname = "vm"\nmac = "%s"\nsocket = "%s"\nvhost = "%s"\n' "$VM_MAC" "$d/vm.sock" "$ROLE" >"$d/guests.toml"
    ip netns exec "${HOST_NS[$h]}" "$BIN" --no-huge -m 1024 --no-pci --file-prefix="$FILE_PREFIX-$h" -l 0-1 \
        --vdev=net_af_packet0,iface=mvtup0 \
        -- --port 0 --guests "$d/guests.toml" --stats-interval 5 --stats-json "$d/stats.json" \
        --control "$d/control.sock" >"$d/switch.log" 2>&1 &
    sw_pid[$h]=$!
    wait_line "$d/switch.log" 0 'dpdk-macvtap: forwarding' 60 "${sw_pid[$h]}" >/dev/null ||
        die "dpdk-macvtap on host $h did not start forwarding; its log:
$(tail -n 30 "$d/switch.log")"
    echo "   host $h: dpdk-macvtap pid ${sw_pid[$h]} in ${HOST_NS[$h]}, vhost role $ROLE, log $d/switch.log"
}

say "starting both switches"
start_switch a
start_switch b

fdb() {
    local e
    e=$(ip netns exec "$PREFIX-br" bridge fdb show br br0 | grep -i "^$VM_MAC " | grep -v permanent | tr '\n' ' ' || true)
    echo "${e:-(no entry)}"
}

# --- 3. the VM on A, its stream and the ping ---------------------------------------------------------

failures=()
# guest_oops ID: the first kernel messages on the VM's console that say it found its own memory
# or rings inconsistent (a panicked guest's QEMU exits: -no-reboot), on one line; fails if none.
guest_oops() {
    local m
    m=$(grep -E -m3 'BUG|corruption|is not a head|self-detected stall|soft lockup|Oops|general protection|Kernel panic' \
        "$DIR/$1.console") || return 1
    printf '%s' "$m" | tr -d '\r' | tr '\n' ' '
}
# boot_qemu ID HOST [QEMU ARG...]: the VM's QEMU attached to HOST's switch (or, NIC=tap, to
# HOST's tap), QMP on $DIR/ID.qmp.
boot_qemu() {
    local id=$1 h=$2 tap='' ns=''
    shift 2
    rm -f "$DIR/$id.qmp"
    [ "$NIC" = vhost ] || tap=${BR_PORT[$h]} ns=$PREFIX-br
    QVM_TAP=$tap QVM_NETNS=$ns QVM_ID=$id QVM_SOCK=$DIR/$h/vm.sock QVM_SOCK_SERVER=$([ "$ROLE" = client ] && echo 1 || true) \
        QVM_NIC_OPTS=$NIC_OPTS qvm_start vm "$VM_MAC" "$VM_IP" "$EXT_IP" 1 \
        -qmp "unix:$DIR/$id.qmp,server=on,wait=off" "$@"
}

say "booting the VM on host A (accel=$ACCEL, ${VM_MEM} MB, NIC $NIC, announce by $ANNOUNCE; TCG is slow)"
boot_qemu vm-a1 a
cur=vm-a1
r=$(wait_line "$DIR/$cur.console" 0 "VM-RESULT: vm ping $EXT_IP " "$BOOT_TIMEOUT" "${qemu_pid[$cur]}") ||
    die "the VM gave no ping result; console: $(qvm_console "$cur" | tail -n 20)"
echo "   $r (after $((SECONDS - T0))s)"
case $r in *" OK:"*) ;; *) die "the VM could not ping $EXT_IP" ;; esac
wait_line "$DIR/$cur.console" 0 "VM-READY: vm" 30 "${qemu_pid[$cur]}" >/dev/null || die "the VM takes no commands"
grep -h 'link up' "$DIR/a/switch.log" | sed 's/^/   switch a| /' || true

# The external host's end of the stream: every line with its arrival time, then how it ended.
cat >"$DIR/sink.py" <<'PY'
import socket, sys, time
ip, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port))
s.listen(1)
print("listening", flush=True)
c, peer = s.accept()
print(f"{time.time():.3f} accepted {peer[0]}:{peer[1]}", flush=True)
try:
    for line in c.makefile("rb"):
        print(f"{time.time():.3f} {line.decode(errors='replace').strip()}", flush=True)
    print(f"{time.time():.3f} EOF", flush=True)
except OSError as e:
    print(f"{time.time():.3f} ERROR {e}", flush=True)
PY
rm -f "$DIR/stream.log" "$DIR/ping.log"
ip netns exec "$PREFIX-ext" "$PY" "$DIR/sink.py" "$EXT_IP" "$STREAM_PORT" >"$DIR/stream.log" 2>&1 &
aux_pids+=($!)
sink_pid=$!
wait_line "$DIR/stream.log" 0 '^listening' 10 "$sink_pid" >/dev/null || die "the stream sink did not start"
vm_cmd "$cur" "stream $EXT_IP $STREAM_PORT"
wait_line "$DIR/stream.log" 0 ' seq 10$' 30 "$sink_pid" >/dev/null || die "no stream from the VM: $(cat "$DIR/stream.log")"
echo "   TCP stream vm -> $EXT_IP:$STREAM_PORT running"

# -O: a line for every request that got no answer in time, so losses have timestamps too.
ip netns exec "$PREFIX-ext" ping -D -O -i 0.1 -W 1 "$VM_IP" >"$DIR/ping.log" 2>&1 &
aux_pids+=($!)
ping_pid=$!
wait_line "$DIR/ping.log" 0 'icmp_seq=20 ttl' 30 "$ping_pid" >/dev/null || die "the VM does not answer pings: $(tail -n 5 "$DIR/ping.log")"
echo "   ping $EXT_IP -> $VM_IP every 0.1 s running"

# --- 4. migrations --------------------------------------------------------------------------------------

declare -a mig_report=()
# memcheck FROM TO: the pages of guest memory that differ between the stopped source and the
# destination once it has loaded them and before it runs (the legacy VGA and BIOS area,
# 0xa0000-0xfffff, is left out: not RAM the migration carries), with the rows that differ in
# $DIR/memdiff-FROM-TO.log; then starts the destination,
# whose RESUME event goes to $DIR/TO-resume.qmp.log as without MEMCHECK. One QMP client at a
# time: this takes the destination's socket only after its load.
memcheck() {
    local from=$1 to=$2 loaded=no
    rm -f "$DIR/$from.mem" "$DIR/$to.mem"
    "$PY" dpdk-config/qmp.py --timeout 120 "$DIR/$from.qmp" \
        "{\"execute\":\"pmemsave\",\"arguments\":{\"val\":0,\"size\":$((VM_MEM << 20)),\"filename\":\"$DIR/$from.mem\"}}" \
        >>"$DIR/memcheck.log" 2>&1 || die "pmemsave on $from failed: $(tail -n 2 "$DIR/memcheck.log")"
    # With -S the destination stays paused once the load is complete.
    for _ in $(seq 300); do
        if "$PY" dpdk-config/qmp.py "$DIR/$to.qmp" '{"execute":"query-status"}' 2>&1 | grep -q '"status":"paused"'; then
            loaded=yes
            break
        fi
        sleep 0.1
    done
    [ "$loaded" = yes ] || die "$to did not finish loading within 30 s"
    "$PY" dpdk-config/qmp.py --timeout 120 "$DIR/$to.qmp" \
        "{\"execute\":\"pmemsave\",\"arguments\":{\"val\":0,\"size\":$((VM_MEM << 20)),\"filename\":\"$DIR/$to.mem\"}}" \
        '{"execute":"cont"}' event:RESUME >"$DIR/$to-resume.qmp.log" 2>&1 ||
        die "pmemsave or cont on $to failed: $(tail -n 2 "$DIR/$to-resume.qmp.log")"
    "$PY" - "$DIR/$from.mem" "$DIR/$to.mem" "$from->$to" "$DIR/memdiff-$from-$to.log" <<'PY' | tee -a "$DIR/memcheck.log" ||
import sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
page = 4096
diff = [i * page for i in range(len(a) // page)
        if not 0xa0000 <= i * page < 0x100000 and a[i * page:(i + 1) * page] != b[i * page:(i + 1) * page]]
shown = " ".join(f"{d:#x}" for d in diff[:16])
print(f"   memcheck {sys.argv[3]}: {len(diff)} of {len(a) // page} pages differ{': ' + shown if diff else ''}")
# What differs, for whoever reads the logs: each such 16-byte row on both sides.
with open(sys.argv[4], "w") as out:
    for p in diff[:64]:
        rows = [r for r in range(p, p + page, 16) if a[r:r + 16] != b[r:r + 16]]
        out.write(f"page {p:#x}: {len(rows)} of 256 rows differ\n")
        for r in rows[:48]:
            out.write(f"  {r:#010x} src {a[r:r + 16].hex(' ')}  {bytes(c if 32 <= c < 127 else 46 for c in a[r:r + 16]).decode()}\n")
            out.write(f"  {'':10} dst {b[r:r + 16].hex(' ')}  {bytes(c if 32 <= c < 127 else 46 for c in b[r:r + 16]).decode()}\n")
sys.exit(1 if diff else 0)
PY
        failures+=("$from -> $to: the guest's memory differs between source and destination")
    rm -f "$DIR/$from.mem" "$DIR/$to.mem"
}
# migrate FROM_ID TO_HOST TO_ID: starts the destination QEMU, migrates, quits the source.
migrate() {
    local from=$1 h=$2 to=$3 other fdb_before fdb_after t0 t1 off_a off_b qrc resumed oops
    other=$([ "$h" = a ] && echo b || echo a)
    say "migration $from (host $other) -> $to (host $h)"
    rm -f "$DIR/mig-$to.sock"
    boot_qemu "$to" "$h" -incoming "unix:$DIR/mig-$to.sock" ${MEMCHECK:+-S}
    for _ in $(seq 300); do [ -S "$DIR/mig-$to.sock" ] && break; sleep 0.1; done
    [ -S "$DIR/mig-$to.sock" ] || die "the destination QEMU does not listen on $DIR/mig-$to.sock: $(tail -n 5 "$DIR/$to.console")"
    # The destination's RESUME event, with QEMU's timestamp: the source's STOP to it is how long
    # the guest was paused (QEMU's own `downtime` counts only the source's side).
    if [ -z "$MEMCHECK" ]; then
        "$PY" dpdk-config/qmp.py --timeout 300 "$DIR/$to.qmp" event:RESUME >"$DIR/$to-resume.qmp.log" 2>&1 &
        resume_pid=$!
    fi
    fdb_before=$(fdb)
    echo "   FDB before: $fdb_before"
    off_a=$(size "$DIR/a/switch.log")
    off_b=$(size "$DIR/b/switch.log")
    t0=$(date +%s.%N)
    # max-bandwidth: QEMU's default (32 MiB/s) alone would take seconds for the VM's memory.
    "$PY" dpdk-config/qmp.py --timeout 300 "$DIR/$from.qmp" \
        '{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"events","state":true}]}}' \
        "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"max-bandwidth\":4294967296,\"downtime-limit\":$DOWNTIME_LIMIT}}" \
        "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:$DIR/mig-$to.sock\"}}" \
        event:MIGRATION:status=completed \
        '{"execute":"query-migrate"}' >"$DIR/$from-migrate.qmp.log" 2>&1 || {
        oops=$(guest_oops "$from") || true
        die "migration failed: $(tail -n 5 "$DIR/$from-migrate.qmp.log")${oops:+; the guest kernel on $from reported: $oops}"
    }
    t1=$(date +%s.%N)
    if [ -n "$MEMCHECK" ]; then
        memcheck "$from" "$to"
    else
        wait "$resume_pid" || failures+=("$to: no RESUME event: $(tail -n 2 "$DIR/$to-resume.qmp.log")")
    fi
    # QEMU announces `completed` before it has filled in total-time and downtime: ask again
    # until they are there (the figures take the last answer).
    for _ in $(seq 20); do
        grep '^qmp< {"return":{"status":"completed"' "$DIR/$from-migrate.qmp.log" | tail -n 1 | grep -qv '"total-time":0,' && break
        sleep 0.1
        "$PY" dpdk-config/qmp.py "$DIR/$from.qmp" '{"execute":"query-migrate"}' >>"$DIR/$from-migrate.qmp.log" 2>&1 || break
    done
    "$PY" dpdk-config/qmp.py "$DIR/$to.qmp" '{"execute":"query-status"}' >"$DIR/$to-status.qmp.log" 2>&1 || true
    grep -q '"running":true' "$DIR/$to-status.qmp.log" || failures+=("$to is not running after the migration")
    "$PY" dpdk-config/qmp.py "$DIR/$from.qmp" '{"execute":"quit"}' >/dev/null 2>&1 || true
    for _ in $(seq 100); do kill -0 "${qemu_pid[$from]}" 2>/dev/null || break; sleep 0.1; done
    qrc=0
    wait "${qemu_pid[$from]}" 2>/dev/null || qrc=$?
    # Resumed: a ping answered after the switch-over; the FDB must point at the new port by then
    # or soon after.
    resumed=no
    for _ in $(seq 100); do
        if "$PY" - "$DIR/ping.log" "$t1" <<'PY'; then resumed=yes; break; fi
import re, sys
t = float(sys.argv[2])
for l in open(sys.argv[1]):
    m = re.match(r"\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)", l)
    if m and float(m.group(1)) > t:
        sys.exit(0)
sys.exit(1)
PY
        sleep 0.1
    done
    for _ in $(seq 50); do
        fdb_after=$(fdb)
        case $fdb_after in *"dev ${BR_PORT[$h]} "*) break ;; esac
        sleep 0.1
    done
    echo "   FDB after:  $fdb_after"
    case $fdb_after in *"dev ${BR_PORT[$h]} "*) ;; *) failures+=("$from -> $to: the FDB does not point at ${BR_PORT[$h]}") ;; esac
    [ "$resumed" = yes ] || failures+=("$from -> $to: no ping answered within 10 s of the switch-over")
    echo "   source QEMU exited with status $qrc; pings answered again: $resumed"
    tail -c +"$((off_a + 1))" "$DIR/a/switch.log" | grep -E 'link (up|down)' | sed 's/^/   switch a| /' || true
    tail -c +"$((off_b + 1))" "$DIR/b/switch.log" | grep -E 'link (up|down)' | sed 's/^/   switch b| /' || true
    mig_report+=("$from->$to $t0 $t1 $DIR/$from-migrate.qmp.log $DIR/$to-resume.qmp.log")
    printf '%s\n' "FDB $from->$to before: $fdb_before" "FDB $from->$to after: $fdb_after" >>"$DIR/fdb.log"
    cur=$to
}

rm -f "$DIR/fdb.log" "$DIR/memcheck.log" "$DIR"/memdiff-*.log
# What each host's bridge port (its uplink, or NIC=tap its tap) got tells which announce left
# the destination (a RARP, ethertype 0x8035, or the guest's gratuitous ARP).
for h in a b; do
    ip netns exec "$PREFIX-br" tcpdump -l -n -e -Q in -i "${BR_PORT[$h]}" "ether src $VM_MAC and (arp or rarp)" >"$DIR/$h/announce.log" 2>&1 &
    aux_pids+=($!)
done
# settle: after a move, the stream flows again and 30 more pings are answered (3 s), so that
# each migration's losses are its own.
settle() {
    local off deadline=$((SECONDS + 30))
    off=$(size "$DIR/ping.log")
    wait_line "$DIR/stream.log" "$(size "$DIR/stream.log")" ' seq [0-9]+$' 30 "$sink_pid" >/dev/null ||
        failures+=("the stream stopped after the migration to $cur")
    until [ "$(tail -c +"$((off + 1))" "$DIR/ping.log" | grep -c 'bytes from')" -ge 30 ]; do
        [ "$SECONDS" -lt "$deadline" ] || { failures+=("pings not steady within 30 s after the migration to $cur"); return; }
        sleep 0.5
    done
}
migrate vm-a1 b vm-b
settle
migrate vm-b a vm-a2
settle

# --- 5. the figures -------------------------------------------------------------------------------------

kill -INT "$ping_pid" 2>/dev/null || true
wait "$ping_pid" 2>/dev/null || true
for p in "${aux_pids[@]}"; do [ "$p" = "$sink_pid" ] || kill "$p" 2>/dev/null || true; done
say "figures (${VM_MEM} MB VM, TCG, 2 cores shared by both switches, QEMU and the other work on this machine)"
figures_ok=yes
"$PY" - "$DIR/ping.log" "$DIR/stream.log" "$MAX_LOST" "${mig_report[@]}" >"$DIR/figures.log" 2>&1 <<'PY' || figures_ok=no
import json, re, sys
ping_log, stream_log, max_lost = sys.argv[1], sys.argv[2], int(sys.argv[3])
migs = [m.split() for m in sys.argv[4:]]

replies, unanswered = {}, {}
for l in open(ping_log):
    m = re.match(r"\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)", l)
    if m:
        replies[int(m.group(2))] = float(m.group(1))
    m = re.match(r"\[(\d+\.\d+)\] no answer yet for icmp_seq=(\d+)", l)
    if m:
        unanswered[int(m.group(2))] = float(m.group(1))
# Requests after the last answer may still have been in flight when ping stopped.
last = max(replies)
lost = sorted(s for s in range(1, last + 1) if s not in replies)
# When a lost request went out: ping's `no answer yet` line comes one interval after it.
first = min(replies)
sent = lambda s: unanswered[s] - 0.1 if s in unanswered else replies[first] + (s - first) * 0.1

lines = []
for l in open(stream_log):
    p = l.split()
    if len(p) == 3 and p[1] == "seq":
        lines.append((float(p[0]), int(p[2])))
end = [l.strip() for l in open(stream_log) if " EOF" in l or " ERROR" in l]
seqs = [s for _, s in lines]
gaps_in_seq = [b for a, b in zip(seqs, seqs[1:]) if b != a + 1]
# A guest that died leaves the connection open: the stream must still flow after the last move.
flowing = bool(lines) and lines[-1][0] > float(migs[-1][2]) + 2

ok = True
def event_time(path, name):
    for l in open(path):
        if l.startswith("qmp< ") and f'"event":"{name}"' in l:
            ts = json.loads(l[5:])["timestamp"]
            return ts["seconds"] + ts["microseconds"] / 1e6
    return None

for name, t0, t1, qlog, rlog in migs:
    t0, t1 = float(t0), float(t1)
    q = {}
    for l in open(qlog):
        if l.startswith("qmp< ") and '"status":"completed"' in l and '"return"' in l:
            q = json.loads(l[5:])["return"]
    stop, resume = event_time(qlog, "STOP"), event_time(rlog, "RESUME")
    paused = f"{(resume - stop) * 1000:.0f} ms" if stop and resume else "unknown"
    in_window = [s for s in lost if t0 - 0.5 <= sent(s) <= t1 + 3]
    stall = max((b - a for (a, _), (b, _) in zip(lines, lines[1:]) if t0 - 1 <= b <= t1 + 3), default=0)
    print(f"{name}: migrate command to completed {t1 - t0:.2f} s; QEMU: total-time {q.get('total-time')} ms, "
          f"downtime {q.get('downtime')} ms, ram {q.get('ram', {}).get('transferred', 0) // 1024} KiB in "
          f"{q.get('ram', {}).get('dirty-sync-count')} passes, {q.get('ram', {}).get('downtime-bytes', 0) // 1024} KiB "
          f"while paused; guest paused (source STOP -> destination RESUME): {paused}")
    print(f"{name}: pings lost around the switch-over: {len(in_window)} (seq {in_window}); "
          f"longest stream stall {stall:.2f} s")
    if len(in_window) > max_lost:
        ok = False
        print(f"{name}: FAIL: more than {max_lost} pings lost")
print(f"pings: {len(replies)} answered, {len(lost)} lost of {last} sent over the whole run")
print(f"stream: {len(lines)} lines, seq {seqs[0] if seqs else '-'}..{seqs[-1] if seqs else '-'}, "
      f"jumps in seq: {gaps_in_seq or 'none'}, ended: {end or 'no (still open)'}, "
      f"still flowing 2 s after the last move: {'yes' if flowing else 'NO'}")
survived = flowing and not end and not gaps_in_seq
print(f"stream survived both migrations: {'yes' if survived else 'NO'}")
sys.exit(0 if ok and survived else 1)
PY
cat "$DIR/figures.log"
[ "$figures_ok" = yes ] || failures+=("the figures miss the goal (see above)")
# The guest's own verdict on each move: a kernel that found its rings or memory inconsistent.
for id in vm-b vm-a2; do
    if oops=$(guest_oops "$id"); then failures+=("the guest kernel on $id reported: $oops"); fi
done
kill "$sink_pid" 2>/dev/null || true

for h in a b; do
    echo "   ARP/RARP frames from $VM_MAC into the bridge from host $h (tcpdump on ${BR_PORT[$h]}):"
    grep -E '^[0-9]' "$DIR/$h/announce.log" | sed 's/^/      /' | tail -n 12
done
echo "   FDB entries for $VM_MAC:"
sed 's/^/      /' "$DIR/fdb.log"

# --- 6. shut down ---------------------------------------------------------------------------------------

say "powering off the VM, stopping the switches"
vm_cmd "$cur" off
wait_line "$DIR/$cur.console" 0 "VM-DONE: vm" 60 "${qemu_pid[$cur]}" >/dev/null || failures+=("the VM did not power off")
for _ in $(seq 100); do kill -0 "${qemu_pid[$cur]}" 2>/dev/null || break; sleep 0.2; done
for h in a b; do
    echo "   host $h counters (dpdk-macvtapctl stats):"
    "$CTL" --control "$DIR/$h/control.sock" stats 2>&1 | sed 's/^/      /' || true
done
for h in a b; do
    off=$(size "$DIR/$h/switch.log")
    switch_pid=${sw_pid[$h]}
    stop_switch
    sw_pid[$h]=
    tail -c +"$((off + 1))" "$DIR/$h/switch.log" | grep -E '^(final|mempool in use)' | sed "s/^/   switch $h| /"
    echo "   switch $h exit status: $switch_rc (non-zero also when an mbuf leaked)"
    [ "$switch_rc" -eq 0 ] || failures+=("dpdk-macvtap on host $h exited with status $switch_rc")
done

say "summary (NIC=$NIC ROLE=$ROLE ANNOUNCE=$ANNOUNCE${MEMCHECK:+ MEMCHECK=1})"
sed 's/^/   /' "$DIR/figures.log"
[ -z "$MEMCHECK" ] || grep '^   memcheck' "$DIR/memcheck.log"
echo "   total time: $((SECONDS - T0))s; logs in $DIR"
if [ ${#failures[@]} -gt 0 ]; then
    printf '   FAILED: %s\n' "${failures[@]}"
    exit 1
fi
echo "   PASS"
