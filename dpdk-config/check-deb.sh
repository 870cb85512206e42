#!/usr/bin/env bash
# Checks the Debian package without installing it: builds it (dpdk-config/build-deb.sh, or
# takes the .deb given as an argument), then checks that it holds the binaries, the unit, the
# conffiles, the man pages and the docs; that Depends names the DPDK libraries and plugins;
# that `systemd-analyze verify` accepts the unit as installed from the package (its ExecStart
# binary and its Documentation= man pages resolved inside the extracted package); and that
# every long option of every `--help` of both programs is in their man page.
# Prints one line per failed check and exits 1 if any failed. A few seconds once the
# release build is done. Needs what build-deb.sh needs, plus systemd and man-db.
#
#   bash dpdk-config/check-deb.sh [--install] [PACKAGE.deb]
#
# --install (root; changes the system, so not by default): also installs the package with
# apt-get, runs the service the way its unit does but without systemd (for hosts and CI
# where systemd is not PID 1): ExecStartPre and ExecStart as written in the installed unit,
# with the installed /etc/default/dpdk-macvtap, set to a null vdev without hugepages; then
# dpdk-macvtapctl against it, ExecReload (SIGHUP) after adding a guest to the installed
# guests.toml, SIGTERM; then `apt-get remove --purge` and checks nothing is left behind.
# Refused if dpdk-macvtap is already installed (its purge would take the configuration).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fails=0
fail() { echo "check-deb: FAIL: $*" >&2; fails=$((fails + 1)); }
ok() { echo "check-deb: ok: $*"; }

INSTALL=0
if [ "${1:-}" = --install ]; then
    INSTALL=1
    shift
fi
if [ $# -ge 1 ]; then
    DEB=$1
else
    bash dpdk-config/build-deb.sh
    TARGET=${CARGO_TARGET_DIR:-target}
    DEB=$(ls -t "$TARGET"/debian/dpdk-macvtap_*.deb | head -n1)
fi
[ -f "$DEB" ] || { echo "check-deb: FAIL: no package at $DEB" >&2; exit 1; }
echo "check-deb: checking $DEB"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- file list: path and mode -----------------------------------------------------------
dpkg-deb -c "$DEB" | awk '{print $1, $2, $6}' >"$tmp/list"
expect() { # MODE PATH
    if grep -qxF -e "$1 root/root ./${2#/}" "$tmp/list"; then
        ok "$2 ($1)"
    else
        fail "$2 with mode $1, owner root/root is not in the package"
    fi
}
expect -rwxr-xr-x /usr/bin/dpdk-macvtap
expect -rwxr-xr-x /usr/bin/dpdk-macvtapctl
expect -rw-r--r-- /lib/systemd/system/dpdk-macvtap.service
expect -rw-r--r-- /etc/default/dpdk-macvtap
expect -rw-r--r-- /etc/dpdk-macvtap/guests.toml
expect -rw-r--r-- /usr/share/man/man8/dpdk-macvtap.8.gz
expect -rw-r--r-- /usr/share/man/man8/dpdk-macvtapctl.8.gz
expect -rw-r--r-- /usr/share/doc/dpdk-macvtap/copyright
expect -rw-r--r-- /usr/share/doc/dpdk-macvtap/README.md.gz
expect -rw-r--r-- /usr/share/doc/dpdk-macvtap/changelog.gz
if grep -q ' \./usr/bin/macvtap-guest$\| \./usr/bin/dpdk-macvtap-mangen$' "$tmp/list"; then
    fail "a test or build tool (macvtap-guest, dpdk-macvtap-mangen) is in the package"
fi

# --- control files ----------------------------------------------------------------------
dpkg-deb -I "$DEB" conffiles >"$tmp/conffiles" 2>/dev/null || : >"$tmp/conffiles"
for c in /etc/default/dpdk-macvtap /etc/dpdk-macvtap/guests.toml; do
    if grep -qxF "$c" "$tmp/conffiles"; then ok "conffile $c"; else fail "$c is not a conffile"; fi
done
for s in postinst prerm postrm; do
    dpkg-deb -I "$DEB" "$s" >/dev/null 2>&1 && ok "maintainer script $s" || fail "no $s in the package"
done

depends=$(dpkg-deb -f "$DEB" Depends)
for p in librte-eal librte-ethdev librte-vhost librte-mempool-ring librte-bus-pci librte-bus-vdev \
    librte-net-af-packet librte-net-tap librte-net-virtio; do
    if grep -qE "(^|, )$p-?[0-9]+ \(>= [0-9.~+-]+\)" <<<"$depends"; then
        ok "Depends: $p"
    else
        fail "Depends has no versioned $p<ABI>: $depends"
    fi
done
# The switch serves guests through librte_vhost, not through the net_vhost PMD.
if grep -q 'librte-net-vhost' <<<"$depends"; then fail "Depends names librte-net-vhost, which the switch does not use"; fi
for f in Package Version Architecture Maintainer Installed-Size Description; do
    [ -n "$(dpkg-deb -f "$DEB" "$f")" ] || fail "control has no $f"
done

# --- the unit, as installed -------------------------------------------------------------
dpkg-deb -x "$DEB" "$tmp/root"
unit=$tmp/root/lib/systemd/system/dpdk-macvtap.service
grep -qx 'ExecStart=/usr/bin/dpdk-macvtap $EAL_ARGS -- $MACVTAP_ARGS' "$unit" || fail "unexpected ExecStart in the unit"
grep -qx 'Type=notify' "$unit" || fail "the unit is not Type=notify"
if command -v systemd-analyze >/dev/null 2>&1; then
    # A root of the package's files over copies of the host's units (sysinit.target,
    # dev-hugepages.mount, ...) and of the helpers the unit runs (/bin/sh, /bin/kill): with
    # --root, systemd-analyze finds the unit's dependencies and executables there, so
    # ExecStart=/usr/bin/dpdk-macvtap must be the package's. MANPATH: Documentation='s man
    # pages must be the package's, too. Any message is a finding.
    vroot=$tmp/vroot
    mkdir -p "$vroot/usr/lib/systemd/system" "$vroot/bin"
    cp -a /usr/lib/systemd/system/. "$vroot/usr/lib/systemd/system/"
    if [ "$(realpath /lib/systemd/system)" != "$(realpath /usr/lib/systemd/system)" ]; then
        mkdir -p "$vroot/lib/systemd/system" # a system without merged /usr
        cp -a /lib/systemd/system/. "$vroot/lib/systemd/system/"
    fi
    cp -L /bin/sh /bin/kill "$vroot/bin/"
    cp -a "$tmp/root/." "$vroot/"
    if MANPATH=$vroot/usr/share/man systemd-analyze verify --root="$vroot" \
        "$vroot/lib/systemd/system/dpdk-macvtap.service" >"$tmp/verify" 2>&1 && [ ! -s "$tmp/verify" ]; then
        ok "systemd-analyze verify (ExecStart and Documentation= resolved in the package)"
    else
        fail "systemd-analyze verify: $(cat "$tmp/verify")"
    fi
else
    fail "systemd-analyze is not installed (apt-get install systemd)"
fi

# --- man pages against --help -----------------------------------------------------------
# Plain ASCII, wide, without hyphenation, so that an option is never split across lines.
render() { LC_ALL=C MANWIDTH=200 man --nh --nj -l "$1" </dev/null 2>/dev/null | col -b; }
long_options() { grep -oE -- '--[a-z][a-z0-9-]+' | sort -u; }
check_page() { # PAGE HELP-TEXT-FILE
    local page=$1 help=$2 text missing
    text=$(cat "$page.txt")
    [ -n "$text" ] || { fail "$(basename "$page") renders empty"; return; }
    missing=$(long_options <"$help" | while read -r opt; do grep -qF -- "$opt" <<<"$text" || echo "$opt"; done)
    if [ -n "$missing" ]; then
        fail "$(basename "$page") lacks options that --help has: $(echo $missing)"
    else
        ok "$(basename "$page") has every option of --help ($(long_options <"$help" | wc -l))"
    fi
    for section in NAME SYNOPSIS DESCRIPTION OPTIONS EXAMPLES FILES 'EXIT STATUS' 'SEE ALSO'; do
        grep -qx "$section" <<<"$text" || fail "$(basename "$page") has no $section section"
    done
}
if command -v man >/dev/null 2>&1; then
    bin=$tmp/root/usr/bin
    man8=$tmp/root/usr/share/man/man8
    for page in dpdk-macvtap dpdk-macvtapctl; do render "$man8/$page.8.gz" >"$man8/$page.8.gz.txt"; done
    # Without `--`, the switch parses only its own options, so --help needs no EAL.
    "$bin/dpdk-macvtap" --help >"$tmp/switch.help"
    check_page "$man8/dpdk-macvtap.8.gz" "$tmp/switch.help"
    grep -qx SIGNALS "$man8/dpdk-macvtap.8.gz.txt" || fail "dpdk-macvtap.8 has no SIGNALS section"
    "$bin/dpdk-macvtapctl" --help >"$tmp/ctl.help"
    # Every command's own options; the command names themselves, too.
    "$bin/dpdk-macvtapctl" --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && $1 != "help" && NF {print $1}' >"$tmp/commands"
    while read -r c; do
        "$bin/dpdk-macvtapctl" "$c" --help </dev/null >>"$tmp/ctl.help"
        grep -qx "   $c" "$man8/dpdk-macvtapctl.8.gz.txt" ||
            fail "dpdk-macvtapctl.8 has no subsection for command $c"
    done <"$tmp/commands"
    [ -s "$tmp/commands" ] || fail "could not list the commands of dpdk-macvtapctl --help"
    check_page "$man8/dpdk-macvtapctl.8.gz" "$tmp/ctl.help"
else
    fail "man is not installed (apt-get install man-db): cannot check the pages"
fi

# --- lintian, if present: advisory ------------------------------------------------------
if command -v lintian >/dev/null 2>&1; then
    lintian "$DEB" >"$tmp/lintian" 2>&1 || true
    if grep -q '^E:' "$tmp/lintian"; then
        echo "check-deb: lintian errors (advisory):" && grep '^E:' "$tmp/lintian"
    fi
fi

# --- installed, run without systemd, purged -----------------------------------------------
install_smoke() {
    local unit=/lib/systemd/system/dpdk-macvtap.service env=/etc/default/dpdk-macvtap
    local prefix=check-deb-$$ log=$tmp/switch.log pid status pre start reload i
    [ "$(id -u)" -eq 0 ] || { fail "--install needs root"; return; }
    if [ "$(dpkg-query -W -f='${db:Status-Status}' dpdk-macvtap 2>/dev/null || true)" = installed ]; then
        fail "--install: dpdk-macvtap is already installed; its purge would remove its configuration"
        return
    fi
    run() { echo "+ $*" >&2; "$@"; }
    echo "+ apt-get install -y $(realpath "$DEB")"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$(realpath "$DEB")" >"$tmp/apt.log" 2>&1 ||
        { cat "$tmp/apt.log" >&2; fail "apt-get install failed"; return; }
    ok "installed: $(dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}' dpdk-macvtap)"
    echo "+ dpkg -L dpdk-macvtap"
    dpkg -L dpdk-macvtap | sed 's/^/  | /'
    for f in /usr/bin/dpdk-macvtap /usr/bin/dpdk-macvtapctl "$unit" "$env" /etc/dpdk-macvtap/guests.toml \
        /usr/share/man/man8/dpdk-macvtap.8.gz /usr/share/man/man8/dpdk-macvtapctl.8.gz; do
        dpkg -L dpdk-macvtap | grep -qxF "$f" && [ -e "$f" ] || fail "installed package lacks $f"
    done
    man -w dpdk-macvtap dpdk-macvtapctl >/dev/null 2>&1 && ok "man finds both pages" || fail "man does not find the pages"
    verify=$(systemd-analyze verify "$unit" 2>&1) && [ -z "$verify" ] &&
        ok "systemd-analyze verify $unit: no message" || fail "systemd-analyze verify $unit: $verify"

    # The unit's own lines, with systemd's escapes: $$ is a literal $ (then the shell expands
    # it from the environment file); $VAR splits at whitespace, which unquoted $VAR in bash
    # does alike for these values.
    pre=$(sed -n 's/^ExecStartPre=//p' "$unit" | sed 's/\$\$/$/g')
    start=$(sed -n 's/^ExecStart=//p' "$unit")
    reload=$(sed -n 's/^ExecReload=//p' "$unit")
    echo "+ (as shipped: EAL_ARGS empty) $pre"
    if (set -a && . "$env" && eval "$pre") 2>"$tmp/pre.err"; then
        fail "ExecStartPre accepted an empty EAL_ARGS"
    else
        ok "ExecStartPre refuses the shipped default: $(cat "$tmp/pre.err")"
    fi
    echo "+ sed -i 's|^EAL_ARGS=.*|EAL_ARGS=\"... --vdev net_null0 ...\"|' $env"
    sed -i "s|^EAL_ARGS=.*|EAL_ARGS=\"-l 0-1 --no-huge -m 512 --no-pci --vdev net_null0 --file-prefix $prefix --log-level lib.eal:warning\"|" "$env"
    grep '^EAL_ARGS=\|^MACVTAP_ARGS=' "$env"
    # What systemd would do first: RuntimeDirectory=, the limits.
    install -d -m 0755 /run/dpdk-macvtap
    # Whatever fails from here on, the switch is stopped and the package purged at exit.
    # (Globals: the trap runs after this function's locals are gone.)
    SMOKE_PID= SMOKE_PREFIX=$prefix
    trap '{ [ -n "${SMOKE_PID:-}" ] && kill -TERM "$SMOKE_PID"; rm -rf "/run/dpdk/$SMOKE_PREFIX"
        dpkg-query -W dpdk-macvtap && DEBIAN_FRONTEND=noninteractive apt-get remove --purge -y -qq dpdk-macvtap
        rm -rf "$tmp"; } >/dev/null 2>&1 || true' EXIT
    # systemd's notification socket, to see what the switch reports (Type=notify needs
    # READY=1, or systemd fails the start after TimeoutStartSec).
    local notify=$tmp/notify.sock listener=
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    print(s.recv(4096).decode(errors="replace").replace("\n", " "), flush=True)' "$notify" >"$tmp/notify.log" 2>&1 &
        listener=$!
        for i in $(seq 50); do [ -S "$notify" ] && break; sleep 0.1; done
    fi
    echo "+ set -a; . $env; $pre && exec $start   (LimitMEMLOCK, LimitNOFILE as the unit's; NOTIFY_SOCKET=$notify)"
    (
        # Best effort: a container may not allow raising them (LimitMEMLOCK matters for a
        # NIC's DMA memory, not for this null vdev without hugepages).
        ulimit -l unlimited 2>/dev/null || echo "(ulimit -l unlimited: not permitted here)"
        ulimit -n 65536 2>/dev/null || echo "(ulimit -n 65536: not permitted here)"
        set -a
        . "$env"
        set +a
        [ -S "$notify" ] && export NOTIFY_SOCKET=$notify
        eval "$pre" && eval "exec $start"
    ) >"$log" 2>&1 &
    pid=$!
    SMOKE_PID=$pid
    for i in $(seq 100); do
        dpdk-macvtapctl --timeout 1 version >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    sed 's/^/  | /' "$log"
    run dpdk-macvtapctl version || fail "dpdk-macvtapctl version"
    run dpdk-macvtapctl guest-list | tee "$tmp/list1" || fail "dpdk-macvtapctl guest-list"
    grep -q '^vm1 ' "$tmp/list1" && ok "vm1 from the installed guests.toml is running" || fail "vm1 not listed"
    [ -S /run/dpdk-macvtap/vm1.sock ] && ok "/run/dpdk-macvtap/vm1.sock exists" || fail "no /run/dpdk-macvtap/vm1.sock"

    echo "+ add vm2 to /etc/dpdk-macvtap/guests.toml; MAINPID=$pid $reload"
    printf '\n[[guest]]\nname = "vm2"\nmac = "52:54:00:00:00:02"\nsocket = "/run/dpdk-macvtap/vm2.sock"\nmode = "private"\n' \
        >>/etc/dpdk-macvtap/guests.toml
    MAINPID=$pid eval "$reload" || fail "ExecReload failed"
    for i in $(seq 50); do grep -q 'vm2' "$log" && break; sleep 0.1; done
    run dpdk-macvtapctl guest-list | tee "$tmp/list2" || fail "dpdk-macvtapctl guest-list after SIGHUP"
    grep -q '^vm2 ' "$tmp/list2" && ok "SIGHUP (ExecReload) added vm2" || fail "vm2 not added by SIGHUP"

    run kill -TERM "$pid" || fail "the switch is not running"
    status=0
    wait "$pid" || status=$?
    SMOKE_PID=
    echo "  | ... (log from the reload on)"
    sed -n '/vm2/,$p' "$log" | sed 's/^/  | /'
    [ "$status" -eq 0 ] && ok "SIGTERM: exit status 0" || fail "SIGTERM: exit status $status"
    if [ -n "$listener" ]; then
        kill "$listener" 2>/dev/null || true
        echo "+ cat NOTIFY_SOCKET messages"; sed 's/^/  | /' "$tmp/notify.log"
        # Advisory until the switch's sd_notify support is in: the unit already expects it.
        grep -q 'READY=1' "$tmp/notify.log" && ok "READY=1 on NOTIFY_SOCKET" ||
            echo "check-deb: note: no READY=1 on NOTIFY_SOCKET: under systemd, Type=notify would fail the start"
        grep -q 'STOPPING=1' "$tmp/notify.log" && ok "STOPPING=1 on NOTIFY_SOCKET" ||
            echo "check-deb: note: no STOPPING=1 on NOTIFY_SOCKET"
    fi
    grep -q 'mempool in use at exit: 0 ' "$log" && ok "every mbuf back at exit" || fail "mbufs missing at exit"
    echo "+ ls -A /run/dpdk-macvtap"; ls -A /run/dpdk-macvtap || true
    [ -z "$(ls -A /run/dpdk-macvtap 2>/dev/null)" ] && ok "the switch removed its sockets" || fail "sockets left in /run/dpdk-macvtap"
    rm -rf "/run/dpdk/$prefix"

    echo "+ apt-get remove --purge -y dpdk-macvtap"
    DEBIAN_FRONTEND=noninteractive apt-get remove --purge -y -qq dpdk-macvtap >"$tmp/apt.log" 2>&1 ||
        { cat "$tmp/apt.log" >&2; fail "apt-get remove --purge failed"; return; }
    dpkg-query -W -f='${db:Status-Status}' dpdk-macvtap 2>/dev/null | grep -q installed &&
        fail "dpdk-macvtap still installed after purge"
    local before=$fails
    for f in /usr/bin/dpdk-macvtap /usr/bin/dpdk-macvtapctl "$unit" "$env" /etc/dpdk-macvtap \
        /etc/systemd/system/dpdk-macvtap.service /run/dpdk-macvtap \
        /var/lib/systemd/deb-systemd-helper-enabled/dpdk-macvtap.service.dsh-also \
        /var/lib/systemd/deb-systemd-helper-masked/dpdk-macvtap.service; do
        [ -e "$f" ] || [ -L "$f" ] && fail "left behind after purge: $f"
    done
    [ "$fails" -gt "$before" ] || ok "purged: nothing left behind"
}
if [ "$INSTALL" = 1 ]; then
    install_smoke
fi

if [ "$fails" -gt 0 ]; then
    echo "check-deb: $fails check(s) failed" >&2
    exit 1
fi
echo "check-deb: all checks passed"
exit 0
