#!/usr/bin/env bash
# Builds the Debian package of dpdk-macvtap with one command:
#
#   bash dpdk-config/build-deb.sh   ->  ${CARGO_TARGET_DIR:-target}/debian/dpdk-macvtap_<version>_<arch>.deb
#
# Steps: the release binaries (cargo build --release: a no-op when they are up to date), the
# man pages (dpdk-config/mangen: from the clap definitions plus dpdk-config/man/*.8.in), a
# staged file tree, DEBIAN/ (control, conffiles, md5sums, maintainer scripts from
# dpdk-config/deb/), then `dpkg-deb --build`. Plain dpkg-deb rather than cargo-deb: nothing
# to compile or download first (cargo-deb is a few minutes of build on two cores), and the
# control file is ours to write: Depends has the libraries dpkg-shlibdeps finds in the
# binaries plus the DPDK plugins EAL loads at run time, which no linker-based tool can see.
#
# Environment: DEB_VERSION (default: the crate's version), DEB_MAINTAINER (default: the
# author of the commit built), SKIP_CARGO_BUILD=1 (package the release binaries as they are).
# Needs dpkg-dev (dpkg-shlibdeps) and binutils; installs them when run as root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

say() { echo "build-deb: $*"; }
die() { echo "build-deb: error: $*" >&2; exit 1; }

# rustup installs into ~/.cargo/bin, which a non-login root shell (sudo, CI) may not have on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH (bash dpdk-config/setup.sh prepares the machine)"

missing=()
for tool in dpkg-deb:dpkg dpkg-shlibdeps:dpkg-dev objdump:binutils strip:binutils gzip:gzip; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: apt-get install ${missing[*]}"
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
        die "could not install ${missing[*]}"
fi

TARGET=${CARGO_TARGET_DIR:-target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
OUT=$TARGET/debian
BIN=$TARGET/release

# --- binaries ---------------------------------------------------------------------------
if [ "${SKIP_CARGO_BUILD:-0}" != 1 ]; then
    say "cargo build --release (dpdk-macvtap, dpdk-macvtapctl)"
    cargo build --release --locked --bin dpdk-macvtap --bin dpdk-macvtapctl
fi
for b in dpdk-macvtap dpdk-macvtapctl; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing (cargo build --release)"
done

# The version the binaries carry (`dpdk-macvtapctl 0.1.0`), so the package cannot claim another.
VERSION=$("$BIN/dpdk-macvtapctl" --version | awk '{print $2}')
[ -n "$VERSION" ] || die "cannot read the version from $BIN/dpdk-macvtapctl --version"
DEB_VERSION=${DEB_VERSION:-$VERSION}
ARCH=$(dpkg --print-architecture)
# Dates from the commit, so that building the same commit twice gives the same package.
if git -C "$ROOT" rev-parse --verify -q HEAD >/dev/null 2>&1; then
    COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
    git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || COMMIT=$COMMIT+changes
    export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct)}
    MAINTAINER=${DEB_MAINTAINER:-$(git -C "$ROOT" log -1 --format='%an <%ae>')}
else
    COMMIT=unknown
    export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date +%s)}
    MAINTAINER=${DEB_MAINTAINER:-dpdk-macvtap maintainers <root@localhost>}
fi
DATE=$(date -u -d "@$SOURCE_DATE_EPOCH" +%F)
DEB=$OUT/dpdk-macvtap_${DEB_VERSION}_${ARCH}.deb

# --- staged tree ------------------------------------------------------------------------
STAGE=$OUT/stage
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN"
umask 022

for b in dpdk-macvtap dpdk-macvtapctl; do
    install -D -m 0755 "$BIN/$b" "$STAGE/usr/bin/$b"
    # As dh_strip does: no debug information or symbol table in the package.
    strip --remove-section=.comment --remove-section=.note "$STAGE/usr/bin/$b"
done
install -D -m 0644 dpdk-config/dpdk-macvtap.service "$STAGE/lib/systemd/system/dpdk-macvtap.service"
install -D -m 0644 dpdk-config/default/dpdk-macvtap "$STAGE/etc/default/dpdk-macvtap"
install -D -m 0644 dpdk-config/deb/guests.toml "$STAGE/etc/dpdk-macvtap/guests.toml"

say "man pages (dpdk-config/mangen)"
MAN=$STAGE/usr/share/man/man8
cargo run --locked -q -p dpdk-macvtap-mangen -- \
    --version "$VERSION" --date "$DATE" --templates dpdk-config/man --out "$MAN" >/dev/null
for page in dpdk-macvtap.8 dpdk-macvtapctl.8; do
    [ -s "$MAN/$page" ] || die "the generator wrote no $page"
    chmod 0644 "$MAN/$page"
    gzip -9n "$MAN/$page"
done

DOC=$STAGE/usr/share/doc/dpdk-macvtap
install -D -m 0644 dpdk-config/deb/copyright "$DOC/copyright"
install -D -m 0644 README.md "$DOC/README.md"
gzip -9n "$DOC/README.md"
install -D -m 0644 dpdk-config/guests.example.toml "$DOC/examples/guests.example.toml"
{
    echo "dpdk-macvtap ($DEB_VERSION) unstable; urgency=medium"
    echo
    echo "  * Built from commit $COMMIT (dpdk-macvtap $VERSION)."
    echo
    echo " -- $MAINTAINER  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$DOC/changelog.gz"
chmod 0644 "$DOC/changelog.gz"

# --- DEBIAN/ ----------------------------------------------------------------------------
for s in postinst prerm postrm; do
    install -m 0755 "dpdk-config/deb/$s" "$STAGE/DEBIAN/$s"
done
printf '%s\n' /etc/default/dpdk-macvtap /etc/dpdk-macvtap/guests.toml >"$STAGE/DEBIAN/conffiles"

# Libraries the binaries link: dpkg-shlibdeps reads their NEEDED entries and the shlibs files
# of the packages providing them. It wants a debian/control to exist, so it runs in a scratch
# directory with a minimal one.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/debian"
printf 'Source: dpdk-macvtap\n\nPackage: dpdk-macvtap\nArchitecture: any\n' >"$scratch/debian/control"
shlibs=$(cd "$scratch" && dpkg-shlibdeps -O "$STAGE/usr/bin/dpdk-macvtap" "$STAGE/usr/bin/dpdk-macvtapctl" 2>"$scratch/shlibdeps.err" |
    sed -n 's/^shlibs:Depends=//p') || { cat "$scratch/shlibdeps.err" >&2; die "dpkg-shlibdeps failed"; }
[[ "$shlibs" == *librte-eal* ]] || { cat "$scratch/shlibdeps.err" >&2; die "dpkg-shlibdeps found no DPDK library: $shlibs"; }

# Plugins: EAL loads drivers from its plugin directory at start, so nothing links them and
# `dpdk` only Recommends them. The switch cannot run without the ring mempool driver (its
# packet pool) and the buses its uplinks sit on; af_packet and tap are the uplinks for a host
# without a DPDK NIC (what the documentation shows), virtio the NIC of a VM. Not net_vhost:
# guests are served through librte_vhost directly (linked, so in $shlibs).
abi=$(objdump -p "$STAGE/usr/bin/dpdk-macvtap" | awk '$1 == "NEEDED" && $2 ~ /^librte_eal\.so\./ { sub(/.*\.so\./, "", $2); print $2 }')
[ -n "$abi" ] || die "cannot find the DPDK ABI version (librte_eal.so.N) in dpdk-macvtap"
dpdk_min=$(dpkg-query -W -f='${Version}' "librte-eal$abi" 2>/dev/null | sed -E 's/^([0-9]+\.[0-9]+).*/\1/')
[ -n "$dpdk_min" ] || die "librte-eal$abi is not installed"
# Debian appends the ABI to a library's name, with a hyphen when the name ends in a digit.
pkg() { if [[ $1 =~ [0-9]$ ]]; then echo "$1-$abi"; else echo "$1$abi"; fi; }
known() { dpkg-query -W "$1" >/dev/null 2>&1 || apt-cache show "$1" >/dev/null 2>&1; }
list() {
    local out=() p
    for base in "$@"; do
        p=$(pkg "$base")
        known "$p" || die "no package $p (DPDK ABI $abi): update the plugin list in $0"
        out+=("$p (>= $dpdk_min)")
    done
    local IFS=,
    echo "${out[*]}" | sed 's/,/, /g'
}
plugins=$(list librte-mempool-ring librte-bus-pci librte-bus-vdev librte-net-af-packet librte-net-tap librte-net-virtio)
# Common NIC drivers, and the null device of the smoke tests; any other PMD works as well.
recommends=$(list librte-net-i40e librte-net-iavf librte-net-ice librte-net-ixgbe librte-net-e1000 librte-net-mlx5 librte-net-vmxnet3 librte-net-null)

# procps: the unit's ExecReload runs /bin/kill (dash, for ExecStartPre's /bin/sh, is Essential).
installed_size=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat >"$STAGE/DEBIAN/control" <<EOF
Package: dpdk-macvtap
Version: $DEB_VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $installed_size
Depends: $shlibs, $plugins, procps
Recommends: $recommends
Suggests: dpdk, dpdk-dev, driverctl, qemu-system-x86
Section: net
Priority: optional
Description: DPDK switch giving each VM its own MAC on the uplink, like macvtap
 dpdk-macvtap forwards between one DPDK uplink port (a NIC, or a kernel
 interface through AF_PACKET or TAP) and virtual machines attached over
 vhost-user sockets, each with its own MAC address(es) on the uplink, the way
 Linux macvlan/macvtap does, at DPDK speed. Forwarding is VEPA (IEEE 802.1Qbg)
 by default, with private and bridge modes per guest.
 .
 Guests are listed in /etc/dpdk-macvtap/guests.toml and can be added, changed
 and removed while it runs, with dpdk-macvtapctl or a reload (SIGHUP). The
 package ships a systemd service, not enabled: set EAL_ARGS in
 /etc/default/dpdk-macvtap first.
EOF

# Checksums of every file but the conffiles (dpkg keeps theirs itself), as dh_md5sums does.
(cd "$STAGE" && find . -type f ! -path './DEBIAN/*' -printf '/%P\n' | grep -vxF -f DEBIAN/conffiles |
    sed 's|^/||' | LC_ALL=C sort | xargs -d '\n' md5sum) >"$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/conffiles" "$STAGE/DEBIAN/md5sums"

mkdir -p "$OUT"
rm -f "$OUT"/dpdk-macvtap_*_"$ARCH".deb
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
say "$DEB ($(du -h "$DEB" | cut -f1))"
if command -v lintian >/dev/null 2>&1; then
    say "lintian (advisory):"
    lintian "$DEB" 2>/dev/null || true
fi
