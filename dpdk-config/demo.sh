#!/usr/bin/env bash
# One command that shows dpdk-macvtap doing its job (as root, on a fresh machine):
#   two guests (virtio-user test guests) share one uplink; vm1 streams frames to vm2.
#   1. The external bridge has hairpin on: frames go out of the uplink, the bridge reflects
#      them, and they come back in to vm2 (VEPA: the switch itself never short-cuts them).
#   2. Hairpin off: vm2 gets nothing, because dpdk-macvtap does not switch locally.
#   Each time, the switch's own hairpin self-test says whether the bridge reflects.
# Exits 0 only if both happened. Logs stay in /tmp/dpdk-macvtap-demo for a look afterwards.
#   FRAMES=N (default 10000), FRAME_LEN=N (default 128), SKIP_SETUP=1, SKIP_BUILD=1
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=dpdk-config/lab.sh
. dpdk-config/lab.sh
# shellcheck source=dpdk-config/eal/demo.conf
. dpdk-config/eal/demo.conf

FRAMES=${FRAMES:-10000}
FRAME_LEN=${FRAME_LEN:-128}
DIR=/tmp/dpdk-macvtap-demo
LAB=demo
BIN=$ROOT/target/release
VM1_MAC=52:54:00:00:00:01
VM2_MAC=52:54:00:00:00:02
# vm2 stops counting after this long without a frame; long enough to cover the time vm1
# needs to start its stream after vm2 started counting.
IDLE_MS=3000

say() { printf '\n== %s\n' "$*"; }
die() { echo "demo: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (network namespaces, DPDK)"

if [ -z "${SKIP_SETUP:-}" ]; then
    bash dpdk-config/setup.sh
fi
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if [ -z "${SKIP_BUILD:-}" ]; then
    say "building (release)"
    cargo build --release --bins
fi
for b in dpdk-macvtap dpdk-macvtapctl macvtap-guest; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing (build with: cargo build --release)"
done

switch_pid=
declare -A guest_pid=() guest_in=() guest_out=()

cleanup() {
    local rc=$? name
    trap - EXIT INT TERM
    for name in "${!guest_pid[@]}"; do
        # Polite first, so a guest closes its virtio device and the switch sees a clean
        # disconnect; a guest that is stuck gets killed.
        { echo quit 1>&"${guest_in[$name]}"; } 2>/dev/null || true
    done
    for name in "${!guest_pid[@]}"; do
        for _ in $(seq 20); do kill -0 "${guest_pid[$name]}" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "${guest_pid[$name]}" 2>/dev/null || true
    done
    if [ -n "$switch_pid" ] && kill -0 "$switch_pid" 2>/dev/null; then
        kill -INT "$switch_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$switch_pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$switch_pid" 2>/dev/null; then
            echo "demo: switch did not stop on SIGINT within 10 s; killing it" >&2
            kill -KILL "$switch_pid" 2>/dev/null || true
        fi
    fi
    wait 2>/dev/null || true
    lab_down "$LAB"
    rm -f "$DIR"/*.in "$DIR"/*.out
    # DPDK leaves its runtime files behind even after a clean exit.
    rm -rf /var/run/dpdk/mvt-demo-*
    exit "$rc"
}
trap cleanup EXIT
# Ctrl-C: leave through cleanup with the conventional status.
trap 'exit 130' INT TERM

# Starts a test guest talking to us through two FIFOs: commands in, replies out. Both ends are
# opened read-write on our side, which never blocks on a FIFO, whatever order things start in.
guest_start() {
    local name=$1 mac=$2 fd
    rm -f "$DIR/$name.in" "$DIR/$name.out"
    mkfifo "$DIR/$name.in" "$DIR/$name.out"
    exec {fd}<>"$DIR/$name.in"
    guest_in[$name]=$fd
    exec {fd}<>"$DIR/$name.out"
    guest_out[$name]=$fd
    # A guest needs far less memory than the switch's profile gives; one lcore is plenty.
    "$BIN/macvtap-guest" --no-huge -m 256 --no-pci --log-level=lib.eal:warning \
        --file-prefix="mvt-demo-$name" -l 0 \
        -- --socket "$DIR/$name.sock" --mac "$mac" \
        <"$DIR/$name.in" >"$DIR/$name.out" 2>"$DIR/$name.log" &
    guest_pid[$name]=$!
}

# Prints the first line from the guest that starts with PREFIX; fails after TIMEOUT seconds
# or if the guest answers `error` or dies.
guest_wait() {
    local name=$1 prefix=$2 timeout=$3 line deadline=$((SECONDS + $3))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if IFS= read -r -t 1 -u "${guest_out[$name]}" line; then
            case $line in
                "$prefix"*) printf '%s\n' "$line"; return 0 ;;
                error*) die "$name: $line" ;;
            esac
        elif ! kill -0 "${guest_pid[$name]}" 2>/dev/null; then
            die "$name exited; its log ($DIR/$name.log):
$(tail -n 20 "$DIR/$name.log")"
        fi
    done
    die "$name: no '$prefix' within ${timeout}s; its log ($DIR/$name.log):
$(tail -n 20 "$DIR/$name.log")"
}

guest_cmd() {
    printf '%s\n' "$2" 1>&"${guest_in[$1]}"
}

# Waits for a line in the switch's log (it is not a FIFO: the log is kept for the user).
switch_wait() {
    local pattern=$1 timeout=$2 deadline=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$deadline" ]; do
        grep -q -- "$pattern" "$DIR/switch.log" && return 0
        kill -0 "$switch_pid" 2>/dev/null || die "dpdk-macvtap exited; its log:
$(tail -n 30 "$DIR/switch.log")"
        sleep 0.2
    done
    return 1
}

# The switch's output since byte OFFSET, last few lines: its per-second stats show what it did.
switch_show_since() {
    tail -c +"$(($1 + 1))" "$DIR/switch.log" | tail -n "${2:-4}" | sed 's/^/   switch| /'
}

log_size() { stat -c %s "$DIR/switch.log"; }

# One run: vm2 counts while vm1 streams FRAMES frames to it. Sets $received.
stream_vm1_to_vm2() {
    local sent counted before
    before=$(log_size)
    guest_cmd vm2 "count $IDLE_MS"
    guest_cmd vm1 "stream $VM2_MAC $VM1_MAC $FRAME_LEN $FRAMES"
    sent=$(guest_wait vm1 sent 120)
    counted=$(guest_wait vm2 counted $((FRAMES / 100 + 60)))
    # The stats line of the second after the stream.
    sleep 1.2
    received=${counted#counted }
    received=${received%% *}
    echo "   vm1: $sent frames of $FRAME_LEN bytes to vm2"
    echo "   vm2: $counted"
    switch_show_since "$before"
}

mkdir -p "$DIR"
rm -f "$DIR"/*.sock
cat >"$DIR/guests.toml" <<EOF
# dpdk-macvtap demo: two VEPA guests.
[[guest]]
name = "vm1"
mac = "$VM1_MAC"
socket = "$DIR/vm1.sock"

[[guest]]
name = "vm2"
mac = "$VM2_MAC"
socket = "$DIR/vm2.sock"
EOF

say "lab: namespaces $LAB-sw (switch, uplink mvtup0) / $LAB-br (Linux bridge br0) / $LAB-ext"
lab_up "$LAB"
lab_hairpin "$LAB" on

say "starting dpdk-macvtap in $LAB-sw"
# shellcheck disable=SC2086 # EAL_ARGS is a list of words
ip netns exec "$LAB-sw" "$BIN/dpdk-macvtap" $EAL_ARGS --file-prefix=mvt-demo-sw -l 0-1 \
    --vdev=net_af_packet0,iface=mvtup0 \
    -- --port 0 --guests "$DIR/guests.toml" --stats-interval 1 --control "$DIR/control.sock" \
    >"$DIR/switch.log" 2>&1 &
switch_pid=$!
switch_wait "dpdk-macvtap: forwarding" 60 || die "dpdk-macvtap did not start forwarding in 60 s; its log:
$(tail -n 30 "$DIR/switch.log")"
# The start-up hairpin self-test's verdict follows within a second.
switch_wait "^hairpin: " 10 || true
sed 's/^/   switch| /' "$DIR/switch.log"

say "starting guests vm1 ($VM1_MAC) and vm2 ($VM2_MAC)"
guest_start vm1 "$VM1_MAC"
guest_start vm2 "$VM2_MAC"
# Assigned first: a failure inside $(...) in echo's arguments would not stop the script.
ready=$(guest_wait vm1 ready 70)
echo "   vm1: $ready"
ready=$(guest_wait vm2 ready 70)
echo "   vm2: $ready"
switch_wait "guest vm2: link up" 10 || true
grep -h "link up" "$DIR/switch.log" | sed 's/^/   switch| /' || true

# Like a guest's gratuitous ARP on boot: the bridge learns vm2 on its uplink port, so vm1's
# unicast to vm2 goes back down that port (hairpin) instead of being flooded to the outside.
guest_cmd vm2 "send $(printf 'ffffffffffff%s88b5%s' "${VM2_MAC//:/}" "$(printf '00%.0s' $(seq 46))")"
guest_wait vm2 sent 10 >/dev/null
guest_cmd vm1 "recv 500"
guest_wait vm1 "done" 10 >/dev/null

say "1. hairpin ON: vm1 -> uplink -> bridge reflects -> uplink -> vm2"
stream_vm1_to_vm2
hairpin_on=$received

say "2. hairpin OFF: the bridge does not reflect, and dpdk-macvtap never forwards guest to guest"
lab_hairpin "$LAB" off
"$BIN/dpdk-macvtapctl" --control "$DIR/control.sock" hairpin-check | sed 's/^/   dpdk-macvtapctl hairpin-check| /'
stream_vm1_to_vm2
hairpin_off=$received

say "stopping"
before=$(log_size)
for name in vm1 vm2; do
    guest_cmd "$name" quit
    guest_wait "$name" bye 10 >/dev/null
    wait "${guest_pid[$name]}" || echo "   $name exited with status $?"
    unset "guest_pid[$name]"
done
kill -INT "$switch_pid"
for _ in $(seq 100); do kill -0 "$switch_pid" 2>/dev/null || break; sleep 0.1; done
switch_rc=0
wait "$switch_pid" || switch_rc=$?
switch_pid=
switch_show_since "$before" 8
echo "   dpdk-macvtap exited with status $switch_rc"

say "result"
echo "   hairpin on:  vm2 received $hairpin_on of $FRAMES"
echo "   hairpin off: vm2 received $hairpin_off of $FRAMES"
ok=1
[ "$hairpin_on" -gt 0 ] || { echo "   FAIL: nothing arrived through the hairpin bridge"; ok=0; }
[ "$hairpin_off" -eq 0 ] || { echo "   FAIL: frames reached vm2 without the bridge: local switching"; ok=0; }
[ "$switch_rc" -eq 0 ] || { echo "   FAIL: dpdk-macvtap exited with $switch_rc"; ok=0; }
if [ "$ok" = 1 ]; then
    echo "   OK: guest-to-guest traffic goes through the external bridge only (VEPA)"
    echo "   logs: $DIR"
else
    echo "   logs: $DIR"
    exit 1
fi
