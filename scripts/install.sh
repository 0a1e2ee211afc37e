#!/usr/bin/env bash
# Install evse-agent as a systemd service: user and groups, virtualenv under /opt, config, unit.
#
# Idempotent: every step compares before it writes, a second run with the same checkout changes nothing and
# ends with "evse-agent install: unchanged". An operator's /etc/evse-agent/agent.toml is never overwritten;
# agent.toml.example next to it is always refreshed. See docs/install.md.
#
# Usage: scripts/install.sh [--root DIR] [--source DIR] [--python PATH] [--wheels DIR] [--no-venv]
#                          [--no-systemctl]
#   --root DIR      install into DIR instead of / (an image tree): no user accounts are created (the
#                   sysusers.d file does it at the image's first boot), no chown (tmpfiles.d does it), no
#                   systemctl, and no virtualenv: the build host's Python would be named in it. The wheels
#                   go to DIR/opt/evse-agent/wheels; evse-agent-venv.service builds the venv from them,
#                   offline, at the first boot
#   --source DIR    the evse-agent checkout to install (default: the one this script lives in)
#   --python PATH   the Python (>= 3.11) that creates the virtualenv, or with --root builds the wheels
#                   (default: python3)
#   --wheels DIR    with --root: copy this wheelhouse (scripts/wheelhouse.py, make wheels) instead of
#                   building one, which needs the package index
#   --no-venv       do not create or update /opt/evse-agent/venv (with --root: do not ship the wheels)
#   --no-systemctl  do not run systemctl daemon-reload
set -euo pipefail

readonly SERVICE=evse-agent
readonly VENV_REL=opt/evse-agent/venv
readonly MIN_PYTHON=3.11

ROOT=/
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=python3
DO_VENV=1
DO_SYSTEMCTL=1
WHEELS=""
CHANGES=0

die() { echo "install.sh: error: $*" >&2; exit 1; }
note() { echo "  $*"; }
changed() { CHANGES=$((CHANGES + 1)); note "changed: $*"; }

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --root) [[ $# -ge 2 ]] || die "--root needs a directory"; ROOT="$2"; shift 2 ;;
        --source) [[ $# -ge 2 ]] || die "--source needs a directory"; SOURCE="$2"; shift 2 ;;
        --python) [[ $# -ge 2 ]] || die "--python needs a path"; PYTHON="$2"; shift 2 ;;
        --wheels) [[ $# -ge 2 ]] || die "--wheels needs a directory"; WHEELS="$2"; shift 2 ;;
        --no-venv) DO_VENV=0; shift ;;
        --no-systemctl) DO_SYSTEMCTL=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ -d "$ROOT" ]] || die "--root $ROOT is not a directory"
ROOT="$(cd "$ROOT" && pwd)"
[[ -d "$SOURCE" ]] || die "--source $SOURCE is not a directory"
SOURCE="$(cd "$SOURCE" && pwd)"
for f in pyproject.toml systemd/evse-agent.service systemd/evse-agent.toml.example docs/install.md \
    systemd/evse-agent-venv.service systemd/evse-agent.sysusers.conf systemd/evse-agent.tmpfiles.conf \
    scripts/evse-agent-venv.sh scripts/wheelhouse.py; do
    [[ -f "$SOURCE/$f" ]] || die "$SOURCE is not an evse-agent checkout (no $f)"
done

if [[ "$ROOT" == / ]]; then
    SYSTEM=1
    P=""  # path prefix: nothing, the live system
    [[ $EUID -eq 0 ]] || die "installing into / needs root (run with sudo), or use --root DIR"
else
    # A tree that is not the running system: its accounts and service manager are not ours to change.
    SYSTEM=0
    P="$ROOT"
    DO_SYSTEMCTL=0
fi
if [[ -n "$WHEELS" ]]; then
    [[ $SYSTEM -eq 0 ]] || die "--wheels is for image trees (--root DIR)"
    [[ -d "$WHEELS" ]] || die "--wheels $WHEELS is not a directory"
    compgen -G "$WHEELS/evse_agent-*.whl" >/dev/null || die "--wheels $WHEELS holds no evse_agent wheel"
    WHEELS="$(cd "$WHEELS" && pwd)"
fi

# ---- helpers: each one writes only when the target differs ----------------------------------------------

# owner_ok PATH OWNER:GROUP -> true if PATH already has that owner, or ownership is not managed (--root)
owner_ok() {
    [[ $SYSTEM -eq 0 || -z "$2" ]] && return 0
    [[ "$(stat -c %U:%G "$1")" == "$2" ]]
}

set_owner() {
    [[ $SYSTEM -eq 1 && -n "$2" ]] && chown "$2" "$1"
    return 0
}

# owner_label OWNER:GROUP -> " OWNER:GROUP" for the change report when ownership is managed, else ""
owner_label() {
    [[ $SYSTEM -eq 1 && -n "$1" ]] && echo " $1"
    return 0
}

# ensure_dir DIR MODE [OWNER:GROUP]
ensure_dir() {
    local dir="$1" mode="$2" owner="${3:-}"
    if [[ ! -d "$dir" ]]; then
        mkdir -p "$dir"
        chmod "$mode" "$dir"
        set_owner "$dir" "$owner"
        changed "created $dir ($mode$(owner_label "$owner"))"
        return
    fi
    if [[ "$(stat -c %a "$dir")" != "${mode#0}" ]] || ! owner_ok "$dir" "$owner"; then
        chmod "$mode" "$dir"
        set_owner "$dir" "$owner"
        changed "fixed mode/owner of $dir ($mode$(owner_label "$owner"))"
    fi
}

# ensure_shared_dir DIR: a system directory other packages use too; created if missing, its mode left alone
ensure_shared_dir() {
    if [[ ! -d "$1" ]]; then
        mkdir -p "$1"
        chmod 0755 "$1"
        changed "created $1 (0755)"
    fi
}

# install_file SRC DEST MODE [OWNER:GROUP]: atomic replace when the content, mode or owner differs
install_file() {
    local src="$1" dest="$2" mode="$3" owner="${4:-}"
    if [[ -f "$dest" ]] && cmp -s "$src" "$dest" && [[ "$(stat -c %a "$dest")" == "${mode#0}" ]] \
        && owner_ok "$dest" "$owner"; then
        return
    fi
    local what="installed"
    [[ -e "$dest" ]] && what="updated"
    local tmp
    tmp="$(mktemp "$(dirname "$dest")/.$(basename "$dest").XXXXXX")"
    cat "$src" > "$tmp"
    chmod "$mode" "$tmp"
    set_owner "$tmp" "$owner"
    mv -f "$tmp" "$dest"  # rename: a reader never sees a half-written file
    changed "$what $dest ($mode$(owner_label "$owner"))"
}

# write_file DEST MODE [OWNER:GROUP] < content
write_file() {
    local tmp
    tmp="$(mktemp)"
    cat > "$tmp"
    install_file "$tmp" "$@"
    rm -f "$tmp"
}

# ---- 1. user and groups ---------------------------------------------------------------------------------
# dialout: serial ports; gpio: GPIO chips (exists on Raspberry Pi OS, created elsewhere); evse: technicians
# who may use evsectl. The user's own group evse-agent is created with it.
ensure_shared_dir "$P/usr/lib/sysusers.d"
install_file "$SOURCE/systemd/evse-agent.sysusers.conf" "$P/usr/lib/sysusers.d/evse-agent.conf" 0644
# Owners and modes of the directories, applied at every boot once the accounts exist (an image tree gets
# no chown here).
ensure_shared_dir "$P/usr/lib/tmpfiles.d"
install_file "$SOURCE/systemd/evse-agent.tmpfiles.conf" "$P/usr/lib/tmpfiles.d/evse-agent.conf" 0644

in_group() { id -nG "$1" 2>/dev/null | tr ' ' '\n' | grep -qx "$2"; }

if [[ $SYSTEM -eq 1 ]]; then
    users_before="$(getent passwd evse-agent || true)|$(getent group dialout gpio evse evse-agent || true)"
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers /usr/lib/sysusers.d/evse-agent.conf
    else
        for g in dialout gpio evse; do
            getent group "$g" >/dev/null || groupadd --system "$g"
        done
        if ! getent passwd evse-agent >/dev/null; then
            getent group evse-agent >/dev/null || groupadd --system evse-agent
            useradd --system --gid evse-agent --home-dir /var/lib/evse-agent --no-create-home \
                --shell /usr/sbin/nologin --comment "evse-agent charge point daemon" evse-agent
        fi
        for g in dialout gpio evse; do
            in_group evse-agent "$g" || usermod -a -G "$g" evse-agent
        done
    fi
    users_after="$(getent passwd evse-agent || true)|$(getent group dialout gpio evse evse-agent || true)"
    [[ "$users_before" == "$users_after" ]] || changed "user evse-agent and groups dialout, gpio, evse"
fi

# ---- 2. virtualenv --------------------------------------------------------------------------------------
ensure_dir "$P/opt/evse-agent" 0755

# A fingerprint of what pip would install, so an unchanged checkout is not reinstalled.
source_fingerprint() {
    (cd "$SOURCE" && find pyproject.toml agent drivers simulator -type f \
        \( -name '*.py' -o -name '*.toml' -o -name '*.json' \) -not -path '*/__pycache__/*' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

# The first-boot builder: builds the venv from /opt/evse-agent/wheels when none exists (image trees).
ensure_dir "$P/opt/evse-agent/bin" 0755
install_file "$SOURCE/scripts/evse-agent-venv.sh" "$P/opt/evse-agent/bin/evse-agent-venv" 0755

# sync_wheels SRC DEST: DEST's wheels become SRC's, each compared before it is written
sync_wheels() {
    local src="$1" dest="$2" wheel
    ensure_dir "$dest" 0755
    for wheel in "$src"/*.whl; do
        install_file "$wheel" "$dest/$(basename "$wheel")" 0644
    done
    for wheel in "$dest"/*.whl; do
        [[ -e "$wheel" && ! -e "$src/$(basename "$wheel")" ]] || continue
        rm -f "$wheel"
        changed "removed $wheel"
    done
}

if [[ $DO_VENV -eq 1 && $SYSTEM -eq 0 ]]; then
    # An image tree: wheels, no venv. A venv made here would start with #!$ROOT/... and point pyvenv.cfg at
    # this host's interpreter, neither of which exists on the charger.
    if [[ -n "$WHEELS" ]]; then
        sync_wheels "$WHEELS" "$P/opt/evse-agent/wheels"
    else
        wheel_dir="$(mktemp -d)"
        trap 'rm -rf "$wheel_dir"' EXIT
        "$PYTHON" "$SOURCE/scripts/wheelhouse.py" --source "$SOURCE" --out "$wheel_dir" >/dev/null \
            || die "could not build the wheels (scripts/wheelhouse.py needs the package index; or use --wheels)"
        sync_wheels "$wheel_dir" "$P/opt/evse-agent/wheels"
        rm -rf "$wheel_dir"
        trap - EXIT
    fi
fi

if [[ $DO_VENV -eq 1 && $SYSTEM -eq 1 ]]; then
    venv="$P/$VENV_REL"
    "$PYTHON" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$MIN_PYTHON'.split('.'))))" \
        || die "$PYTHON is older than Python $MIN_PYTHON"
    if [[ ! -x "$venv/bin/python" ]]; then
        # --system-site-packages: on Raspberry Pi OS the GPIO libraries (python3-lgpio, python3-rpi-lgpio)
        # come from apt and need the kernel headers of that image; the venv must see them.
        "$PYTHON" -m venv --system-site-packages "$venv"
        changed "created virtualenv $venv"
    fi
    stamp="$venv/.evse-agent-source"
    want="$(source_fingerprint)"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]] || ! "$venv/bin/python" -c "import agent" 2>/dev/null; then
        # Build from a copy: pip builds in the tree it is given, and a root-owned build/ and *.egg-info
        # left in the developer's checkout would break their next editable install.
        build_dir="$(mktemp -d)"
        trap 'rm -rf "$build_dir"' EXIT
        tar -C "$SOURCE" --exclude=.venv --exclude=.git --exclude=build --exclude='*.egg-info' \
            --exclude=__pycache__ --exclude=.pytest_cache --exclude=.mypy_cache --exclude=.ruff_cache -cf - . \
            | tar -C "$build_dir" -xf -
        # uninstall first: pip skips a checkout whose version number did not change
        "$venv/bin/python" -m pip uninstall -q -y evse-agent >/dev/null 2>&1 || true
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$build_dir"
        rm -rf "$build_dir"
        trap - EXIT
        echo "$want" > "$stamp"
        changed "installed evse-agent from $SOURCE into $venv"
    fi
fi

# Technicians type `evsectl`; the entry point lives in the venv.
ensure_shared_dir "$P/usr/local/bin"
link="$P/usr/local/bin/evsectl"
if [[ "$(readlink "$link" 2>/dev/null || true)" != "/$VENV_REL/bin/evsectl" ]]; then
    ln -sfn "/$VENV_REL/bin/evsectl" "$link"
    changed "linked $link -> /$VENV_REL/bin/evsectl"
fi

ensure_dir "$P/opt/evse-agent/docs" 0755
install_file "$SOURCE/docs/install.md" "$P/opt/evse-agent/docs/install.md" 0644

# ---- 3. config ------------------------------------------------------------------------------------------
# root owns the config, the daemon's group may read it, nobody else: it names the back office and key file.
ensure_dir "$P/etc/evse-agent" 0750 root:evse-agent
install_file "$SOURCE/systemd/evse-agent.toml.example" "$P/etc/evse-agent/agent.toml.example" 0640 root:evse-agent
if [[ ! -e "$P/etc/evse-agent/agent.toml" ]]; then
    install_file "$SOURCE/systemd/evse-agent.toml.example" "$P/etc/evse-agent/agent.toml" 0640 root:evse-agent
    note "edit $P/etc/evse-agent/agent.toml (the lines marked CHANGE) before starting the service"
else
    note "kept $P/etc/evse-agent/agent.toml (never overwritten; compare with agent.toml.example)"
fi

# ---- 4. state -------------------------------------------------------------------------------------------
# systemd's StateDirectory= would create it too; creating it here lets the operator place files (a
# pre-seeded local authorization list) before the first start.
ensure_dir "$P/var/lib/evse-agent" 0750 evse-agent:evse-agent

# ---- 5. unit --------------------------------------------------------------------------------------------
ensure_shared_dir "$P/etc/systemd/system"
unit_changes=$CHANGES
install_file "$SOURCE/systemd/evse-agent.service" "$P/etc/systemd/system/evse-agent.service" 0644
install_file "$SOURCE/systemd/evse-agent-venv.service" "$P/etc/systemd/system/evse-agent-venv.service" 0644
unit_changed=$((CHANGES - unit_changes))

# ---- 6. systemd -----------------------------------------------------------------------------------------
if [[ $DO_SYSTEMCTL -eq 1 ]]; then
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        if [[ $unit_changed -ne 0 ]]; then
            systemctl daemon-reload
            note "systemctl daemon-reload"
        fi
        if [[ $CHANGES -ne 0 ]] && systemctl is-active --quiet "$SERVICE"; then
            # Not restarted here: a restart during a charging session would interrupt it.
            note "evse-agent is running the old version: restart it when no session runs:"
            note "  sudo systemctl restart evse-agent"
        fi
    else
        note "systemd is not running here: skipped systemctl daemon-reload"
    fi
fi

if [[ $CHANGES -eq 0 ]]; then
    echo "evse-agent install: unchanged"
else
    echo "evse-agent install: $CHANGES change(s)"
fi
if [[ $SYSTEM -eq 0 ]]; then
    echo "next: to start it at the image's boot: systemctl --root=$ROOT enable evse-agent"
    echo "      (its first start builds /opt/evse-agent/venv from the wheels, offline: evse-agent-venv.service)"
elif ! systemctl is-enabled --quiet "$SERVICE" 2>/dev/null; then
    echo "next: edit /etc/evse-agent/agent.toml, then: sudo systemctl enable --now evse-agent"
    echo "      logs: journalctl -u evse-agent -f"
fi
