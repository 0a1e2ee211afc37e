"""Image builds and the Debian package: wheels instead of a build host's venv, the first-boot venv unit,
`make deb`'s package installed into a temporary root with dpkg, an upgrade that keeps the data.

The image's interpreter is this machine's Python, started with the network cut off (`unshare -n` where it
is allowed, a dead proxy otherwise, and pip with --no-index in any case). The compiled dependencies that the
package takes from Debian (packaging/debian-deps.txt) stand in as this environment's own copies, put on
PYTHONPATH the way python3-cryptography puts them on the image's sys.path; everything else must come from
the wheels. Building the wheelhouse needs the package index once; the dependency wheels are cached in
build/wheel-cache, so later runs build only the project's wheel.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "scripts" / "install.sh"
BUILD_DEB = REPO / "scripts" / "build-deb.sh"
WHEELHOUSE = REPO / "scripts" / "wheelhouse.py"
DEB_DIR = REPO / "packaging" / "deb"
CACHE = REPO / "build" / "wheel-cache"
BUILD_TIMEOUT_S = 300.0  # a cold wheelhouse fetches a dozen wheels; a warm one builds one wheel in seconds
STEP_TIMEOUT_S = 120.0  # one venv build from local wheels takes ~6 s here; generous for a shared machine
COPY_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", ".hypothesis"
)


# ---- helpers ------------------------------------------------------------------------------------------


def _run(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = STEP_TIMEOUT_S) -> str:
    """Run a command; fail the test with its output when it exits non-zero."""
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=cwd
    )
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _debian_provided() -> set[str]:
    """The PyPI projects packaging/debian-deps.txt takes from Debian."""
    names = set()
    for line in (REPO / "packaging" / "debian-deps.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(_canonical(line.split()[0]))
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(roots: set[str], stop: set[str]) -> set[str]:
    """Installed distributions reachable from roots through non-extra requirements, not entering stop."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            dep = _canonical(req.name)
            if dep not in stop and dep not in seen:
                todo.append(dep)
    return seen


def _snapshot(tmp: Path, version: str | None = None) -> Path:
    """A copy of the checkout (concurrent edits cannot race the build), optionally with another version."""
    source = tmp / "src"
    shutil.copytree(REPO, source, ignore=COPY_IGNORE)
    if version is not None:
        pyproject = source / "pyproject.toml"
        text, count = re.subn(r'^version = "[^"]+"$', f'version = "{version}"', pyproject.read_text(), flags=re.M)
        assert count == 1
        pyproject.write_text(text)
    return source


def _build_wheelhouse(source: Path, out: Path) -> Path:
    _run([sys.executable, str(source / "scripts" / "wheelhouse.py"), "--source", str(source), "--out", str(out),
          "--cache", str(CACHE)], timeout=BUILD_TIMEOUT_S)
    return out


def _build_deb(source: Path, wheels: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DEB_LINTIAN": "no"}  # lintian runs in its own test
    _run(["bash", str(source / "scripts" / "build-deb.sh"), "--source", str(source), "--wheels", str(wheels),
          "--out", str(out), "--python", sys.executable], env=env)
    (deb,) = out.glob("evse-agent_*_all.deb")
    return deb


def _offline_prefix() -> list[str]:
    """A command prefix that cuts the network, where this machine allows it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True, check=False).returncode == 0:
        return [unshare, "-n"]
    return []


def _image_env(overlay: Path) -> dict[str, str]:
    """The environment of a process on the image: Debian's compiled modules on the path, no proxy, no pip config."""
    dead = "http://127.0.0.1:9"  # nothing listens on discard: any download fails at once
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(PYTHONPATH=str(overlay), http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead,
               no_proxy="", PIP_CONFIG_FILE=os.devnull)
    return env


def _image_python() -> str:
    """The interpreter standing for the image's /usr/bin/python3: Debian's when it matches this Python."""
    system = Path("/usr/bin/python3")
    if system.exists():
        probe = subprocess.run(
            [str(system), "-c", f"import sys, ensurepip, venv; print(sys.version_info[:2] == {sys.version_info[:2]})"],
            capture_output=True, text=True, check=False,
        )
        if probe.stdout.strip() == "True":
            return str(system)
    return str(getattr(sys, "_base_executable", sys.executable))


def _first_boot(root: Path, overlay: Path, *extra: str) -> str:
    """What evse-agent-venv.service runs on the image, with the tree standing for /."""
    return _run([*_offline_prefix(), "sh", str(root / "opt/evse-agent/bin/evse-agent-venv"),
                 "--prefix", str(root / "opt/evse-agent"), "--python", _image_python(), *extra],
                env=_image_env(overlay))


def _installed(root: Path, overlay: Path, code: str, cwd: Path) -> str:
    """Run Python code with the installed venv's interpreter (not from the checkout: cwd is elsewhere)."""
    return _run([str(root / "opt/evse-agent/venv/bin/python"), "-c", textwrap.dedent(code)],
                env=_image_env(overlay), cwd=cwd)


def _scan_for(root: Path, needles: list[str]) -> list[str]:
    """Files under root (and members of its wheels) whose bytes name one of needles."""
    found = []
    encoded = [n.encode() for n in needles]
    for path in root.rglob("*"):
        if path.is_symlink():
            blobs = {str(path): os.readlink(path).encode()}
        elif path.is_file() and path.suffix == ".whl":
            with zipfile.ZipFile(path) as archive:
                blobs = {f"{path}!{m}": archive.read(m) for m in archive.namelist()}
        elif path.is_file():
            blobs = {str(path): path.read_bytes()}
        else:
            continue
        found += [name for name, blob in blobs.items() if any(n in blob for n in encoded)]
    return found


def _dpkg_root(tmp: Path) -> Path:
    """An empty target root with the dpkg database dpkg --root needs."""
    root = tmp / "image"
    for sub in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
        (root / sub).mkdir(parents=True)
    for name in ("status", "available"):
        (root / "var/lib/dpkg" / name).touch()
    return root


def _dpkg(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """dpkg on the tree, maintainer scripts run outside a chroot with DPKG_ROOT set (as mmdebstrap does)."""
    if shutil.which("dpkg") is None:
        pytest.skip("dpkg is not installed: not a Debian system")
    if os.geteuid() != 0:
        pytest.skip("dpkg --root needs root to set file owners")
    return _run(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", "--log=/dev/null",
                 *args], env=env)


# ---- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's compiled modules (cryptography, rpds-py and what they need) as one sys.path directory."""
    directory = tmp_path_factory.mktemp("debian-dist-packages")
    provided = _debian_provided()
    for name in _closure(provided, stop=set()):
        dist = importlib.metadata.distribution(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (directory / top).exists() and not top.endswith((".pth", "..")):
                (directory / top).symlink_to(source)
    return directory


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(source snapshot, wheelhouse) of the checkout."""
    tmp = tmp_path_factory.mktemp("release")
    source = _snapshot(tmp)
    return source, _build_wheelhouse(source, tmp / "wheels")


@pytest.fixture(scope="module")
def deb_old(release: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout's package, standing for the version a charger runs today."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed: not a Debian system (Debian package dpkg)")
    source, wheels = release
    return _build_deb(source, wheels, tmp_path_factory.mktemp("deb-old"))


@pytest.fixture(scope="module")
def deb_new(tmp_path_factory: pytest.TempPathFactory, deb_old: Path) -> Path:
    """The same tree as a newer version: the upgrade."""
    tmp = tmp_path_factory.mktemp("deb-new")
    source = _snapshot(tmp, version="99.0.0")
    return _build_deb(source, _build_wheelhouse(source, tmp / "wheels"), tmp / "out")


@pytest.fixture()
def image(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "image"


# ---- the wheelhouse -----------------------------------------------------------------------------------


def test_wheelhouse_is_pure_and_complete(release: tuple[Path, Path]) -> None:
    _, wheels = release
    names = [w.name for w in wheels.glob("*.whl")]
    assert all(n.endswith("-none-any.whl") for n in names), names
    shipped = {_canonical(n.split("-")[0]) for n in names}
    provided = _debian_provided()
    needed = _closure({"evse-agent"}, stop=provided) - {"evse-agent"}
    # every dependency that Debian does not provide is a wheel; no Debian-provided one is shipped twice
    assert needed <= shipped, needed - shipped
    assert not shipped & provided
    assert "evse-agent" in shipped


# ---- image builds: install.sh --root ------------------------------------------------------------------


def test_image_tree_names_no_build_path(release: tuple[Path, Path], image: Path) -> None:
    source, wheels = release
    image.mkdir()
    output = _run(["bash", str(source / "scripts/install.sh"), "--root", str(image), "--source", str(source),
                   "--wheels", str(wheels)])
    assert "evse-agent install:" in output
    assert not (image / "opt/evse-agent/venv").exists()  # built on the charger, not here
    assert sorted(p.name for p in (image / "opt/evse-agent/wheels").glob("*.whl")) == sorted(
        p.name for p in wheels.glob("*.whl")
    )
    assert os.access(image / "opt/evse-agent/bin/evse-agent-venv", os.X_OK)
    assert (image / "etc/systemd/system/evse-agent-venv.service").is_file()
    assert (image / "usr/lib/tmpfiles.d/evse-agent.conf").is_file()
    needles = [str(image), str(source), str(wheels), str(REPO), sys.prefix, sys.base_prefix]
    assert _scan_for(image, needles) == []
    again = _run(["bash", str(source / "scripts/install.sh"), "--root", str(image), "--source", str(source),
                  "--wheels", str(wheels)])
    assert "evse-agent install: unchanged" in again.splitlines()


def _verify_in(image: Path, unit: str) -> list[str]:
    """systemd-analyze verify --root's complaints about a unit of the image (base units borrowed)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    # the image's own base system: systemd's units and /bin/chgrp (ExecStartPre), as every image has them
    base = Path("/usr/lib/systemd/system")
    if not (image / "usr/lib/systemd/system/sysinit.target").exists():
        shutil.copytree(base, image / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
        (image / "bin").mkdir(exist_ok=True)
        shutil.copy2(shutil.which("chgrp") or "/bin/chgrp", image / "bin/chgrp")
    result = subprocess.run([analyze, "verify", f"--root={image}", str(image / "etc/systemd/system" / unit)],
                            capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def test_image_first_boot_builds_the_venv_offline(release: tuple[Path, Path], overlay: Path, image: Path,
                                                  tmp_path: Path) -> None:
    source, wheels = release
    image.mkdir()
    _run(["bash", str(source / "scripts/install.sh"), "--root", str(image), "--source", str(source),
          "--wheels", str(wheels)])
    assert _verify_in(image, "evse-agent-venv.service") == []
    before = _verify_in(image, "evse-agent.service")
    assert any("/opt/evse-agent/venv/bin/evse-agent is not executable" in line for line in before), before

    output = _first_boot(image, overlay)
    assert "built" in output
    link = image / "opt/evse-agent/venv"
    assert link.is_symlink() and not os.readlink(link).startswith("/")  # relative: valid under any root
    assert _verify_in(image, "evse-agent.service") == []
    checked = _run([str(link / "bin/evse-agent"), "--check-config", "--config",
                    str(image / "etc/evse-agent/agent.toml")], env=_image_env(overlay), cwd=tmp_path)
    assert ": OK (" in checked
    where = _installed(image, overlay, "import agent, ocpp; print(agent.__file__); print(ocpp.__file__)", tmp_path)
    assert all(line.startswith(str(link) + "/") for line in where.split()), where

    before_tree = sorted(str(p) for p in (image / "opt/evse-agent").rglob("*"))
    assert "unchanged" in _first_boot(image, overlay)  # idempotent
    assert sorted(str(p) for p in (image / "opt/evse-agent").rglob("*")) == before_tree


@pytest.mark.soak
def test_first_boot_fails_without_a_needed_wheel(release: tuple[Path, Path], overlay: Path, image: Path) -> None:
    source, wheels = release
    image.mkdir()
    _run(["bash", str(source / "scripts/install.sh"), "--root", str(image), "--source", str(source),
          "--wheels", str(wheels)])
    # Proves the offline install cannot reach anything but the wheels (soak: one more venv build, ~5 s).
    (ocpp,) = (image / "opt/evse-agent/wheels").glob("ocpp-*.whl")
    ocpp.unlink()  # the index is out of reach: nothing may replace it
    result = subprocess.run(
        [*_offline_prefix(), "sh", str(image / "opt/evse-agent/bin/evse-agent-venv"), "--prefix",
         str(image / "opt/evse-agent"), "--python", _image_python()],
        capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False, env=_image_env(overlay),
    )
    assert result.returncode != 0
    assert "ocpp" in result.stderr
    assert not (image / "opt/evse-agent/venv").exists()  # no half-built venv where ExecStart looks


# ---- the Debian package -------------------------------------------------------------------------------


def test_deb_control_and_contents(deb_old: Path, tmp_path: Path) -> None:
    fields = _run(["dpkg-deb", "--field", str(deb_old), "Package", "Version", "Architecture", "Depends"])
    assert "Package: evse-agent" in fields
    assert "Architecture: all" in fields
    assert re.search(r"^Version: \d", fields, re.M)
    depends = fields.split("Depends:", 1)[1]
    for entry in ("python3 (>= 3.11)", "python3-venv", "python3-cryptography (>= 42)", "python3-rpds-py"):
        assert entry in depends, depends
    version = re.search(r"^Version: (.+)$", fields, re.M)
    assert version is not None and deb_old.name == f"evse-agent_{version[1]}_all.deb"

    control = tmp_path / "control"
    _run(["dpkg-deb", "--control", str(deb_old), str(control)])
    assert (control / "conffiles").read_text().split() == ["/etc/evse-agent/agent.toml"]
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(control / script, os.X_OK), script

    tree = tmp_path / "tree"
    _run(["dpkg-deb", "--extract", str(deb_old), str(tree)])
    for rel in ("usr/lib/systemd/system/evse-agent.service", "usr/lib/systemd/system/evse-agent-venv.service",
                "usr/lib/sysusers.d/evse-agent.conf", "usr/lib/tmpfiles.d/evse-agent.conf",
                "etc/evse-agent/agent.toml", "opt/evse-agent/bin/evse-agent-venv",
                "usr/share/doc/evse-agent/copyright"):
        assert (tree / rel).is_file(), rel
    assert any((tree / "opt/evse-agent/wheels").glob("evse_agent-*.whl"))
    assert not (tree / "opt/evse-agent/venv").exists()
    # the checkout, pytest's and build-deb.sh's (mktemp) temporary folders, wheelhouse.py's, this venv
    needles = [str(REPO), str(deb_old.parent.parent), f"{tempfile.gettempdir()}/tmp.", "evse-wheel-", sys.prefix]
    assert _scan_for(tree, needles) == []
    listing = _run(["dpkg-deb", "--contents", str(deb_old)])
    assert re.search(r"^-rw-r----- root/root .* \./etc/evse-agent/agent\.toml$", listing, re.M), listing


def test_lintian_reports_no_errors(deb_old: Path) -> None:
    lintian = shutil.which("lintian")
    if lintian is None:
        pytest.skip("lintian is not installed: `make deb-tools` installs it (Debian package lintian)")
    result = subprocess.run([lintian, str(deb_old)], capture_output=True, text=True,
                            timeout=BUILD_TIMEOUT_S, check=False)
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert errors == [], result.stdout
    assert result.returncode in (0, 1) or not errors  # 2 would mean errors


def test_maintainer_scripts_never_restart_the_daemon() -> None:
    # A restart during a charging session interrupts it: an upgrade leaves the running daemon alone.
    restart = re.compile(r"\b(restart|try-restart|reload-or-restart|condrestart|--now)\b")
    for name in ("postinst", "prerm", "postrm"):
        lines = (DEB_DIR / name).read_text().splitlines()
        code = [line for line in lines if not line.lstrip().startswith(("#", "echo"))]
        assert not [line for line in code if restart.search(line)], name
    prerm = (DEB_DIR / "prerm").read_text()
    assert 'if [ "$1" = remove ]' in prerm  # stops only on removal, never on upgrade


def test_deb_install_first_boot_and_upgrade_keep_the_data(
    deb_old: Path, deb_new: Path, overlay: Path, tmp_path: Path
) -> None:
    root = _dpkg_root(tmp_path)
    _dpkg(root, "--install", str(deb_old))
    assert not (root / "opt/evse-agent/venv").exists()  # DPKG_ROOT: the image's first boot builds it
    _first_boot(root, overlay)
    config = root / "etc/evse-agent/agent.toml"
    assert ": OK (" in _run([str(root / "opt/evse-agent/venv/bin/evse-agent"), "--check-config", "--config",
                             str(config)], env=_image_env(overlay), cwd=tmp_path)

    # The charger runs: a message waits in the queue, and the operator has edited the config.
    state = root / "var/lib/evse-agent"
    state.mkdir(parents=True, exist_ok=True)
    database = state / "state.db"
    _installed(root, overlay, f"""
        from agent.store import Store
        store = Store({str(database)!r})
        store.enqueue("DataTransfer", {{"vendorId": "upgrade-test"}}, wall_time=1.0, monotonic=1.0,
                      clock_trusted=True)
        assert store.pending_count() == 1
        store.close()
    """, tmp_path)
    edited = config.read_text().replace('id = "CP-0001"', 'id = "CP-EDITED"')
    assert edited != config.read_text()
    config.write_text(edited)

    _dpkg(root, "--force-confold", "--install", str(deb_new))
    assert config.read_text() == edited  # the conffile edit survives
    assert not (root / "opt/evse-agent/venv").exists()  # the old version's venv is dropped in an image tree
    _first_boot(root, overlay)
    out = _installed(root, overlay, f"""
        import importlib.metadata
        from agent.store import Store
        print(importlib.metadata.version("evse-agent"))
        store = Store({str(database)!r})
        (message,) = store.pending()
        print(message.action, store.pending_count())
        store.close()
    """, tmp_path)
    assert out.split() == ["99.0.0", "DataTransfer", "1"], out
    assert ": OK (" in _run([str(root / "opt/evse-agent/venv/bin/evse-agent"), "--check-config", "--config",
                             str(config)], env=_image_env(overlay), cwd=tmp_path)
    # only the current build and the one before it are kept
    assert len(list((root / "opt/evse-agent/venvs").iterdir())) == 1

    # A downgrade: the database is newer than the code. The agent refuses it and says why.
    with sqlite3.connect(database) as conn:
        (version,) = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
    refused = subprocess.run(
        [str(root / "opt/evse-agent/venv/bin/python"), "-c",
         f"from agent.store import Store; Store({str(database)!r})"],
        capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False, env=_image_env(overlay), cwd=tmp_path,
    )
    assert refused.returncode != 0
    assert f"schema version {version + 1}, newer than this agent's {version}" in refused.stderr

    # Purge: the config and the venvs go, the state stays unless asked.
    purged = _dpkg(root, "--purge", "evse-agent")
    assert not (root / "etc/evse-agent").exists()
    assert not (root / "opt/evse-agent").exists()
    assert database.exists()
    assert "EVSE_AGENT_PURGE_STATE=yes" in purged


def test_deb_purge_removes_the_state_when_asked(deb_old: Path, tmp_path: Path) -> None:
    root = _dpkg_root(tmp_path)
    _dpkg(root, "--install", str(deb_old))
    (root / "var/lib/evse-agent").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/evse-agent/state.db").write_bytes(b"")
    _dpkg(root, "--purge", "evse-agent", env={**os.environ, "EVSE_AGENT_PURGE_STATE": "yes"})
    assert not (root / "var/lib/evse-agent").exists()
    assert not (root / "etc/evse-agent").exists()


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed: `make deb-tools` installs it (Debian package shellcheck)")
    scripts = [REPO / "scripts" / name for name in ("install.sh", "build-deb.sh", "evse-agent-venv.sh")]
    scripts += [DEB_DIR / name for name in ("postinst", "prerm", "postrm")]
    _run([shellcheck, *map(str, scripts)])
