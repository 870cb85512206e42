#!/usr/bin/env bash
# The one command: installs what the comparison needs, builds, runs dpdk-macvtap, testpmd
# io-fwd, OVS-DPDK and the kernel macvtap interleaved, and writes
# bench/results/<date>-<host>.{md,png,json}.
#
#   bash bench/run.sh [--quick] [--runs N] [any other `macvtap-bench run` option]
#   bash bench/run.sh idle [--quick] [any `macvtap-bench idle` option]   (the idle sleep:
#       idle CPU per --idle-sleep-max, bursts after idle, wake-up delay)
#   bash bench/run.sh control [--cycles N] [any `macvtap-ctlbench` option] (guest add/del/set
#       with 255 other guests, the workers' pause; writes bench/results/<date>-control.md)
#
# Builds into $CARGO_TARGET_DIR when set (else target/). MACVTAP_BIN=PATH measures that
# switch binary instead of the one just built (another build, to compare two in turn).
# As root (hugepages, network namespaces, apt). Cleans up on exit, Ctrl-C or failure: the
# harness's own processes (its process group), OVS daemons it started (by their pidfiles in
# the work directory), its network namespaces (mvtbench-*), and the hugepage count it raised.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MODE=run
case "${1:-}" in
    idle|control) MODE=$1; shift ;;
esac
WORK=${BENCH_WORK:-/tmp/macvtap-bench}
HUGEPAGES=${BENCH_HUGEPAGES:-2048}
HP=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages

say() { echo "bench/run.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    say "run as root (hugepages, network namespaces, apt)"
    exit 1
fi

# --- packages: apt-get update only when something is missing ---------------------------
need=()
command -v dpdk-testpmd >/dev/null || need+=(dpdk-dev)
pkg-config --exists libdpdk 2>/dev/null || need+=(libdpdk-dev)
[ -x /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk ] || need+=(openvswitch-switch-dpdk)
command -v ovs-vsctl >/dev/null || need+=(openvswitch-switch)
dpkg -s libpcap0.8 >/dev/null 2>&1 || need+=(libpcap0.8)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v ip >/dev/null || need+=(iproute2)
command -v taskset >/dev/null || need+=(util-linux)
case " $* " in
    *" --perf "*|*" --perf="*) command -v perf >/dev/null || need+=(linux-perf) ;;
esac
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # The OVS packages try to start their service; policy-rc.d may refuse, which is fine:
    # the harness starts its own private ovsdb-server and ovs-vswitchd.
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    say "cargo not found: dpdk-config/setup.sh installs the toolchain"
    bash dpdk-config/setup.sh
fi

# --- hugepages (2 MB): raised for the run, restored afterwards ---------------------------
hp_before=$(cat "$HP" 2>/dev/null || echo 0)
if [ "$hp_before" -lt "$HUGEPAGES" ]; then
    echo "$HUGEPAGES" > "$HP" || say "could not reserve $HUGEPAGES hugepages (have $hp_before)"
fi
if ! grep -q hugetlbfs /proc/mounts; then
    mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages
fi

bench_pid=
cleanup() {
    local rc=$?
    trap - INT TERM EXIT
    if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
        # The harness's own process group (it and the switches/guests it started).
        kill -INT -- "-$bench_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$bench_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$bench_pid" 2>/dev/null || true
    fi
    # OVS daemonises out of the group: stop the ones this run started, by pidfile.
    for pf in "$WORK"/ovs*/ovs-vswitchd.pid "$WORK"/ovs*/ovsdb-server.pid; do
        [ -f "$pf" ] || continue
        pid=$(cat "$pf" 2>/dev/null || true)
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for ns in $(ip netns list 2>/dev/null | awk '/^mvtbench-/ {print $1}'); do
        ip netns delete "$ns" 2>/dev/null || true
    done
    # A DPDK process that was killed leaves its hugepage files (and runtime directory)
    # behind, and they keep the pages reserved: remove those of this harness's file prefixes
    # (its processes are gone by now), so the pages go back and the count can be restored.
    for p in bguest blat bmvt btpm bovs bctl; do
        rm -f /dev/hugepages/"$p"[0-9]*map_* 2>/dev/null || true
        rm -rf /var/run/dpdk/"$p"[0-9]* 2>/dev/null || true
    done
    if [ "$(cat "$HP" 2>/dev/null || echo 0)" != "$hp_before" ]; then
        echo "$hp_before" > "$HP" 2>/dev/null || true
    fi
    exit $rc
}
trap cleanup INT TERM EXIT

# --- build ---------------------------------------------------------------------------
say "building (release)"
cargo build --release -q
cargo build --release -q -p macvtap-bench

# --- run -------------------------------------------------------------------------------
# setsid: the harness leads its own process group, so cleanup can signal exactly it.
case $MODE in
    run|idle)
        setsid "$TARGET/release/macvtap-bench" "$MODE" --work "$WORK" \
            --macvtap-bin "${MACVTAP_BIN:-$TARGET/release/dpdk-macvtap}" \
            --latgen-bin "$TARGET/release/macvtap-latgen" \
            --out "$ROOT/bench/results" "$@" &
        ;;
    control)
        setsid "$TARGET/release/macvtap-ctlbench" --switch-bin "${MACVTAP_BIN:-$TARGET/release/dpdk-macvtap}" \
            --out "$ROOT/bench/results/$(date +%Y-%m-%d-%H%M)-control.md" "$@" &
        ;;
esac
bench_pid=$!
wait "$bench_pid"
