#!/bin/sh
# Build evse-agent's virtualenv on the charger itself, offline, from the wheels shipped beside it.
#
# Installed as /opt/evse-agent/bin/evse-agent-venv by scripts/install.sh (--root: image trees) and by the
# Debian package. Run by evse-agent-venv.service at an image's first boot and by the package's postinst.
# The venv is made by the charger's own Python, so its scripts and pyvenv.cfg name the charger's paths,
# never a build host's. pip gets no index: everything comes from PREFIX/wheels, and a dependency with
# compiled parts comes from the distribution (the venv sees it through --system-site-packages).
#
# Layout: PREFIX/venvs/<hash of the wheels> holds each build; PREFIX/venv is a relative symlink to the
# current one, switched by an atomic rename, so the unit's ExecStart never sees a half-built venv. The
# previous build is kept (a daemon still running the old version may import from it) and older ones
# removed. Idempotent: with the same wheels and a working venv it changes nothing.
#
# Usage: evse-agent-venv [--prefix DIR] [--python PATH] [--force]
#   --prefix DIR    where wheels/ lies and venv/ goes (default /opt/evse-agent)
#   --python PATH   the interpreter that creates the venv (default /usr/bin/python3, >= 3.11)
#   --force         rebuild even when the current venv matches the wheels
set -eu

PREFIX=/opt/evse-agent
PYTHON=/usr/bin/python3
FORCE=0

die() { echo "evse-agent-venv: error: $*" >&2; exit 1; }
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX="$2"; shift 2 ;;
        --python) [ $# -ge 2 ] || die "--python needs a path"; PYTHON="$2"; shift 2 ;;
        --force) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

umask 022
wheels="$PREFIX/wheels"
link="$PREFIX/venv"
[ -d "$wheels" ] || die "$wheels does not exist: nothing to build the venv from"
set -- "$wheels"/evse_agent-*.whl
[ -f "$1" ] || die "$wheels holds no evse_agent wheel"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (Debian package python3)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is older than Python 3.11"

# The build's name is a hash of the wheels: new wheels (an upgrade) mean a new venv beside the old one.
fingerprint="$(cd "$wheels" && sha256sum -- *.whl | sha256sum | cut -c1-16)"
current="venvs/$fingerprint"
previous="$(readlink "$link" 2>/dev/null || true)"

if [ "$FORCE" -eq 0 ] && [ "$previous" = "$current" ] && "$link/bin/python" -c 'import agent' 2>/dev/null; then
    echo "evse-agent-venv: unchanged ($link -> $current)"
    exit 0
fi

mkdir -p "$PREFIX/venvs"
target="$PREFIX/$current"
rm -rf "$target"  # left by an interrupted run (power cut), or --force
# --system-site-packages: the distribution's compiled modules (python3-cryptography, python3-rpds-py, and
# on Raspberry Pi OS python3-lgpio for GPIO) are used as they are.
"$PYTHON" -m venv --system-site-packages "$target"
# --isolated: no pip.conf or PIP_* variable of the image may add an index; --no-index: no network at all.
"$target/bin/python" -m pip --isolated install --quiet --no-index --find-links "$wheels" --no-cache-dir \
    --disable-pip-version-check evse-agent
"$target/bin/python" -c 'import agent, drivers' || die "the venv in $target cannot import the agent"

if [ -d "$link" ] && [ ! -L "$link" ]; then
    # A venv directory made by an earlier install.sh on this machine: kept aside until the next build.
    rm -rf "$PREFIX/venvs/pre-package"
    mv "$link" "$PREFIX/venvs/pre-package"
    previous="venvs/pre-package"
fi
ln -sfn "$current" "$PREFIX/.venv.new"
mv -fT "$PREFIX/.venv.new" "$link"  # rename(2): the switch is atomic
echo "evse-agent-venv: built $link -> $current from $wheels"

for dir in "$PREFIX"/venvs/*; do
    name="venvs/${dir##*/}"
    if [ "$name" != "$current" ] && [ "$name" != "$previous" ]; then
        rm -rf "$dir"
    fi
done
