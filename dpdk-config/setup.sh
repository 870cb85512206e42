#!/usr/bin/env bash
# Prepares a Debian 12 machine to build and test dpdk-macvtap. Run as root; safe to re-run.
#   HUGEPAGES=N   2 MB hugepages to reserve for benchmarks (default 512; tests run with --no-huge)
set -euo pipefail

HUGEPAGES=${HUGEPAGES:-512}
MIN_DPDK=22.11

say() { echo "setup: $*"; }
warn() { echo "setup: warning: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages, reserves hugepages, and the tests create network namespaces)"

# Build: libdpdk-dev (headers + pkg-config file), clang/libclang-dev (bindgen), pkg-config.
# Run: dpdk, and the PMDs the project loads as plugins; they are only Recommends of `dpdk`,
# so a machine with Recommends turned off would build fine and then find no af_packet/vhost/
# virtio driver at run time; the bonding PMD is also linked (the switch reads a bond's members
# and LACP state). Tests: iproute2 (ip, bridge), procps (sysctl), Prometheus's own Python
# parser for the metrics endpoint (python3-prometheus-client), Open vSwitch (the 802.3ad
# partner of tests/bond.rs: the kernel here has no bonding driver); the package check
# (dpdk-config/check-deb.sh): dpkg-dev, binutils, systemd (systemd-analyze verify), man-db.
REQUIRED=(libdpdk-dev dpdk pkg-config clang libclang-dev iproute2 procps
    librte-net-af-packet23 librte-net-vhost23 librte-net-virtio23 librte-net-tap23 librte-mempool-ring23
    librte-net-bond23 python3-prometheus-client openvswitch-switch dpkg-dev binutils systemd man-db)
# dpdk-testpmd ships in Debian's dpdk-dev ("dev tools"); only the benchmarks need it.
OPTIONAL=(dpdk-dev)

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

missing=()
for p in "${REQUIRED[@]}"; do installed "$p" || missing+=("$p"); done
missing_opt=()
for p in "${OPTIONAL[@]}"; do installed "$p" || missing_opt+=("$p"); done

if [ ${#missing[@]} -gt 0 ] || [ ${#missing_opt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    say "installing ${missing[*]} ${missing_opt[*]}"
    apt-get update -qq
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if [ ${#missing_opt[@]} -gt 0 ]; then
        apt-get install -y -qq --no-install-recommends "${missing_opt[@]}" >/dev/null ||
            warn "could not install ${missing_opt[*]} (dpdk-testpmd): benchmarks will skip the testpmd baseline"
    fi
fi

# rustup installs into ~/.cargo/bin, which a non-login root shell (sudo, CI) may not have on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 ||
    die "no Rust toolchain: cargo is not on PATH (install Rust >= 1.81, e.g. with rustup, then re-run)"

# Hugepages only help benchmarks; the tests and the demo use --no-huge, so nothing here is fatal.
hp_file=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
if [ -w "$hp_file" ]; then
    have=$(cat "$hp_file")
    if [ "$have" -lt "$HUGEPAGES" ]; then
        echo "$HUGEPAGES" >"$hp_file" 2>/dev/null || true
        have=$(cat "$hp_file")
        # Fragmented memory can grant fewer than asked; the kernel does not say so otherwise.
        [ "$have" -ge "$HUGEPAGES" ] || warn "asked for $HUGEPAGES hugepages of 2 MB, got $have (only benchmarks need them)"
    fi
else
    warn "cannot reserve hugepages ($hp_file not writable); only benchmarks need them"
fi
if ! mountpoint -q /dev/hugepages 2>/dev/null; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages 2>/dev/null ||
        warn "could not mount hugetlbfs on /dev/hugepages (only benchmarks need it)"
fi

dpdk_version=$(pkg-config --modversion libdpdk 2>/dev/null) ||
    die "pkg-config does not find libdpdk; is libdpdk-dev installed?"
# sort -V orders version strings; the minimum must come first for the installed one to be enough.
if [ "$(printf '%s\n%s\n' "$MIN_DPDK" "$dpdk_version" | sort -V | head -n1)" != "$MIN_DPDK" ]; then
    die "DPDK $dpdk_version is older than $MIN_DPDK"
fi

testpmd=$(command -v dpdk-testpmd || echo "absent")
say "DPDK $dpdk_version, $(cargo --version | cut -d' ' -f1-2), hugepages $(cat "$hp_file" 2>/dev/null || echo 0)x2MB, testpmd: $testpmd"
