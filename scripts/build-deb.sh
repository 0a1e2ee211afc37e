#!/usr/bin/env bash
# Build evse-agent_<version>_all.deb with dpkg-deb: installable with no network (the agent and its
# pure-Python dependencies as wheels, the compiled ones as Debian Depends), see docs/install.md.
#
# Usage: scripts/build-deb.sh [--out DIR] [--source DIR] [--wheels DIR] [--cache DIR] [--python PATH]
#   --out DIR      where the .deb goes (default: SOURCE/dist)
#   --source DIR   the evse-agent checkout (default: the one this script lives in)
#   --wheels DIR   a wheelhouse made by scripts/wheelhouse.py (default: build one, which needs the index)
#   --cache DIR    dependency wheel cache for scripts/wheelhouse.py (default: SOURCE/build/wheel-cache)
#   --python PATH  the Python that runs scripts/wheelhouse.py (default: python3)
# Environment: DEB_MAINTAINER (default "evse-agent maintainers <evse-agent@example.com>"); DEB_LINTIAN=no
# skips the lintian check.
set -euo pipefail

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT=""
WHEELS=""
CACHE=""
PYTHON=python3
MAINTAINER="${DEB_MAINTAINER:-evse-agent maintainers <evse-agent@example.com>}"

die() { echo "build-deb.sh: error: $*" >&2; exit 1; }
usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) [[ $# -ge 2 ]] || die "--out needs a directory"; OUT="$2"; shift 2 ;;
        --source) [[ $# -ge 2 ]] || die "--source needs a directory"; SOURCE="$2"; shift 2 ;;
        --wheels) [[ $# -ge 2 ]] || die "--wheels needs a directory"; WHEELS="$2"; shift 2 ;;
        --cache) [[ $# -ge 2 ]] || die "--cache needs a directory"; CACHE="$2"; shift 2 ;;
        --python) [[ $# -ge 2 ]] || die "--python needs a path"; PYTHON="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (Debian package dpkg)"
SOURCE="$(cd "$SOURCE" && pwd)"
[[ -f "$SOURCE/pyproject.toml" && -d "$SOURCE/packaging/deb" ]] || die "$SOURCE is not an evse-agent checkout"
OUT="${OUT:-$SOURCE/dist}"
CACHE="${CACHE:-$SOURCE/build/wheel-cache}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

# PEP 440 pre-releases sort before the release; in Debian versions only "~" does: 1.2.0rc1 -> 1.2.0~rc1.
version="$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$SOURCE/pyproject.toml")"
deb_version="$(echo "$version" | sed -E 's/([0-9])(a|b|rc|\.dev)([0-9]+)$/\1~\2\3/')"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"
umask 022

# ---- files ----------------------------------------------------------------------------------------------
install -d "$pkg/opt/evse-agent/wheels" "$pkg/opt/evse-agent/bin" "$pkg/opt/evse-agent/docs"
if [[ -n "$WHEELS" ]]; then
    [[ -d "$WHEELS" ]] || die "--wheels $WHEELS is not a directory"
    cp -- "$WHEELS"/*.whl "$pkg/opt/evse-agent/wheels/"
else
    "$PYTHON" "$SOURCE/scripts/wheelhouse.py" --source "$SOURCE" --out "$pkg/opt/evse-agent/wheels" --cache "$CACHE"
fi
compgen -G "$pkg/opt/evse-agent/wheels/evse_agent-$version-*.whl" >/dev/null \
    || die "the wheelhouse has no evse_agent $version wheel"
chmod 0644 "$pkg"/opt/evse-agent/wheels/*.whl
install -m 0755 "$SOURCE/scripts/evse-agent-venv.sh" "$pkg/opt/evse-agent/bin/evse-agent-venv"
install -m 0644 "$SOURCE/docs/install.md" "$pkg/opt/evse-agent/docs/install.md"

install -d "$pkg/usr/lib/systemd/system" "$pkg/usr/lib/sysusers.d" "$pkg/usr/lib/tmpfiles.d"
install -m 0644 "$SOURCE/systemd/evse-agent.service" "$SOURCE/systemd/evse-agent-venv.service" \
    "$pkg/usr/lib/systemd/system/"
install -m 0644 "$SOURCE/systemd/evse-agent.sysusers.conf" "$pkg/usr/lib/sysusers.d/evse-agent.conf"
install -m 0644 "$SOURCE/systemd/evse-agent.tmpfiles.conf" "$pkg/usr/lib/tmpfiles.d/evse-agent.conf"

# The config is a conffile: dpkg keeps an operator's edited copy on upgrade. Its group (evse-agent, which
# does not exist yet) is set by systemd-tmpfiles in postinst and at every boot.
install -d -m 0750 "$pkg/etc/evse-agent"
install -m 0640 "$SOURCE/systemd/evse-agent.toml.example" "$pkg/etc/evse-agent/agent.toml"

install -d "$pkg/usr/bin"
ln -s /opt/evse-agent/venv/bin/evsectl "$pkg/usr/bin/evsectl"

doc="$pkg/usr/share/doc/evse-agent"
install -d "$doc/examples" "$pkg/usr/share/lintian/overrides"
install -m 0644 "$SOURCE/packaging/deb/copyright" "$doc/copyright"
install -m 0644 "$SOURCE/systemd/evse-agent.toml.example" "$doc/examples/agent.toml"
install -m 0644 "$SOURCE/packaging/deb/lintian-overrides" "$pkg/usr/share/lintian/overrides/evse-agent"
changelog_date="$(date -R -d "@$(git -C "$SOURCE" log -1 --format=%ct 2>/dev/null || date +%s)")"
{
    echo "evse-agent ($deb_version) unstable; urgency=medium"
    echo
    echo "  * evse-agent $version, built from its source tree."
    echo
    echo " -- $MAINTAINER  $changelog_date"
} | gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

# ---- control --------------------------------------------------------------------------------------------
install -d "$pkg/DEBIAN"
depends="python3 (>= 3.11), python3-venv, systemd"
while read -r project _ entry; do
    depends="$depends, $entry"
    : "$project"
done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$SOURCE/packaging/debian-deps.txt")
installed_kb="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
cat > "$pkg/DEBIAN/control" <<EOF
Package: evse-agent
Version: $deb_version
Architecture: all
Maintainer: $MAINTAINER
Installed-Size: $installed_kb
Depends: $depends
Recommends: python3-lgpio
Section: misc
Priority: optional
Description: EV charge point agent: drivers, session control and OCPP
 evse-agent runs on the charge point's computer as a systemd service: it reads
 the energy meters and RFID readers, switches the contactors and talks OCPP
 to the back office, keeping every message queued until it is delivered.
 .
 The package installs with no network: the agent and its pure-Python
 dependencies are shipped as wheels, from which the maintainer script (or the
 first boot of an image) builds /opt/evse-agent/venv.
EOF
echo "/etc/evse-agent/agent.toml" > "$pkg/DEBIAN/conffiles"
(cd "$pkg" && find . -type f ! -path "./DEBIAN/*" -printf "%P\0" | LC_ALL=C sort -z | xargs -0 md5sum) \
    > "$pkg/DEBIAN/md5sums"  # dpkg --verify
for script in postinst prerm postrm; do
    install -m 0755 "$SOURCE/packaging/deb/$script" "$pkg/DEBIAN/$script"
done

deb="$OUT/evse-agent_${deb_version}_all.deb"
SOURCE_DATE_EPOCH="$(git -C "$SOURCE" log -1 --format=%ct 2>/dev/null || date +%s)" \
    dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "build-deb.sh: $deb ($(du -k "$deb" | cut -f1) KiB)"
if [[ "${DEB_LINTIAN:-yes}" == no ]]; then
    echo "build-deb.sh: DEB_LINTIAN=no: the package was not checked with lintian"
elif command -v lintian >/dev/null 2>&1; then
    lintian "$deb" || die "lintian reports errors in $deb"
else
    echo "build-deb.sh: lintian is not installed (make deb-tools): the package was not checked"
fi
