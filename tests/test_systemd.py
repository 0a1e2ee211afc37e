"""The systemd deployment: the unit's directives, systemd's own checks of it, and scripts/install.sh."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from agent.config import load_config

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "evse-agent.service"
EXAMPLE = REPO / "systemd" / "evse-agent.toml.example"
INSTALL = REPO / "scripts" / "install.sh"
SCRIPT_TIMEOUT_S = 60.0  # generous: the machine is shared; a healthy --no-venv run takes well under a second
EXPOSURE_MAX = 2.5  # systemd-analyze security: 0 = fully locked down, 10 = unprotected; this unit rates ~1.7

Unit = dict[str, list[tuple[str, str]]]


# ---- a small parser for systemd unit syntax (systemd.syntax(7)) ---------------------------------------


def parse_unit(text: str) -> Unit:
    """Sections to (key, value) lists in file order; repeated keys kept, continuation lines joined."""
    unit: Unit = {}
    section: str | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if pending and line and line[0] in "#;":
            continue  # a comment inside a continued value is skipped, the value goes on
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, [])
            continue
        if section is None or "=" not in line:
            raise ValueError(f"not a unit file line: {raw!r}")
        key, _, value = line.partition("=")
        unit[section].append((key.strip(), value.strip()))
    if pending:
        raise ValueError("file ends inside a continued line")
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    """Every value assigned to key in section; an empty assignment resets the list, as systemd does."""
    found: list[str] = []
    for k, v in unit.get(section, []):
        if k == key:
            found = [] if v == "" else [*found, v]
    return found


def single(unit: Unit, section: str, key: str) -> str:
    """The value of a key that must be assigned exactly once."""
    found = [v for k, v in unit.get(section, []) if k == key]
    assert len(found) == 1, f"[{section}] {key}= assigned {len(found)} times: {found}"
    return found[0]


def words(unit: Unit, section: str, key: str) -> set[str]:
    """The space-separated items of a list directive, over all its assignments."""
    return {item for value in values(unit, section, key) for item in value.split()}


@pytest.fixture(scope="module")
def unit() -> Unit:
    """The parsed unit file from the checkout."""
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def test_parser_handles_continuations_repeats_and_resets() -> None:
    text = textwrap.dedent(
        """\
        # comment
        [Service]
        ExecStart=/bin/echo a \\
          b
        ; another comment
        DeviceAllow=char-ttyS rw
        DeviceAllow=char-ttyUSB rw
        CapabilityBoundingSet=CAP_NET_RAW
        CapabilityBoundingSet=
        """
    )
    parsed = parse_unit(text)
    assert single(parsed, "Service", "ExecStart") == "/bin/echo a  b"
    assert values(parsed, "Service", "DeviceAllow") == ["char-ttyS rw", "char-ttyUSB rw"]
    assert values(parsed, "Service", "CapabilityBoundingSet") == []
    with pytest.raises(ValueError):
        parse_unit("Key=before any section\n")
    with pytest.raises(ValueError):
        parse_unit("[Service]\nExecStart=/bin/true \\\n")


# ---- the directives -----------------------------------------------------------------------------------

REQUIRED_SERVICE = {
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": "30",
    "Restart": "always",
    "RestartSec": "2",
    "TimeoutStartSec": "120",
    "TimeoutStopSec": "30",
    "KillMode": "mixed",
    "ExecStart": "/opt/evse-agent/venv/bin/evse-agent --config /etc/evse-agent/agent.toml",
    "User": "evse-agent",
    "Group": "evse-agent",
    "UMask": "0027",
    "StateDirectory": "evse-agent",
    "ConfigurationDirectory": "evse-agent",
    "LogsDirectory": "evse-agent",
    "RuntimeDirectory": "evse-agent",
    "RuntimeDirectoryMode": "0750",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "SystemCallArchitectures": "native",
    "MemoryDenyWriteExecute": "yes",
    "DevicePolicy": "closed",
    "PrivateDevices": "no",
}


@pytest.mark.parametrize(("key", "expected"), sorted(REQUIRED_SERVICE.items()))
def test_service_directive(unit: Unit, key: str, expected: str) -> None:
    assert single(unit, "Service", key) == expected


def test_unit_ordering_and_install(unit: Unit) -> None:
    assert words(unit, "Unit", "After") >= {"network-online.target", "time-sync.target"}
    assert "network-online.target" in words(unit, "Unit", "Wants")
    assert single(unit, "Install", "WantedBy") == "multi-user.target"


def test_groups_and_address_families(unit: Unit) -> None:
    assert words(unit, "Service", "SupplementaryGroups") == {"dialout", "gpio", "evse"}
    assert words(unit, "Service", "RestrictAddressFamilies") == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_no_capabilities(unit: Unit) -> None:
    # Assigned, and empty after the last reset: an unassigned CapabilityBoundingSet means "all".
    assert any(k == "CapabilityBoundingSet" for k, _ in unit["Service"])
    assert values(unit, "Service", "CapabilityBoundingSet") == []
    assert values(unit, "Service", "AmbientCapabilities") == []


def test_device_allow_list(unit: Unit) -> None:
    allowed = {}
    for value in values(unit, "Service", "DeviceAllow"):
        device, _, access = value.partition(" ")
        allowed[device] = access
    for device in ("char-ttyUSB", "char-ttyAMA", "char-ttyS", "char-gpiochip"):
        assert allowed.get(device) == "rw", device
    # /dev/gpiomem belongs to bcm2835-gpiomem on older Raspberry Pi kernels, rpi-gpiomem on newer ones
    assert {"char-bcm2835-gpiomem", "char-rpi-gpiomem"} <= allowed.keys()
    assert all(access in {"r", "rw", "rwm", "w"} for access in allowed.values())


def test_only_systemd_managed_directories_are_writable(unit: Unit) -> None:
    # Under ProtectSystem=strict the *Directory= paths are the writable ones; no extra path is opened.
    assert values(unit, "Service", "ReadWritePaths") == []


def test_unit_matches_config_example_and_install_script(unit: Unit) -> None:
    example = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    state_dir = single(unit, "Service", "StateDirectory")
    assert example["state"]["directory"] == f"/var/lib/{state_dir}"
    runtime_dir = single(unit, "Service", "RuntimeDirectory")
    assert Path(example["diag"]["socket"]).parent == Path("/run", runtime_dir)
    assert example["diag"]["group"] in words(unit, "Service", "SupplementaryGroups")
    exec_start = single(unit, "Service", "ExecStart").split()
    venv_rel = re.search(r"^readonly VENV_REL=(\S+)$", INSTALL.read_text(encoding="utf-8"), re.M)
    assert venv_rel is not None
    assert exec_start[0] == f"/{venv_rel[1]}/bin/evse-agent"
    assert exec_start[1:] == ["--config", "/etc/evse-agent/agent.toml"]


def test_config_example_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.state.directory == "/var/lib/evse-agent"
    assert cfg.diag.group == "evse"


# ---- systemd's own checks (when systemd-analyze is installed) ---------------------------------------


def _runnable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an existing binary, since verify checks that it is executable."""
    text = re.sub(r"^ExecStart=.*$", "ExecStart=/bin/true", UNIT.read_text(encoding="utf-8"), flags=re.M)
    copy = tmp_path / "evse-agent.service"
    copy.write_text(text, encoding="utf-8")
    return copy


def _verify(unit_file: Path) -> list[str]:
    """systemd-analyze verify's complaints about unit_file (it exits 0 on mere warnings, so read them)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd); the parser checks still run")
    result = subprocess.run(
        [analyze, "verify", str(unit_file)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    output = (result.stdout + result.stderr).splitlines()
    if result.returncode != 0 and not any(unit_file.name in line for line in output):
        pytest.skip(f"systemd-analyze verify cannot run here: {' | '.join(output)[:300]}")
    complaints = [line for line in output if unit_file.name in line or unit_file.stem in line]
    if result.returncode != 0 and not complaints:
        complaints = output
    return complaints


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    assert _verify(_runnable_copy(tmp_path)) == []


def test_systemd_analyze_verify_catches_mistakes(tmp_path: Path) -> None:
    # The check above must be able to fail: a misspelt key and a bad value are reported.
    copy = _runnable_copy(tmp_path)
    text = copy.read_text(encoding="utf-8").replace("WatchdogSec=30", "WatchdogSec=thirty")
    copy.write_text(text + "\n[Service]\nProtectSystm=strict\n", encoding="utf-8")
    complaints = " ".join(_verify(copy))
    assert "thirty" in complaints
    assert "ProtectSystm" in complaints


def test_systemd_analyze_security_exposure(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(_runnable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    if match is None:
        pytest.skip(f"systemd-analyze security --offline is not supported here: {result.stderr[:200]}")
    assert float(match[1]) <= EXPOSURE_MAX, result.stdout


def test_runtime_survives_memory_deny_write_execute() -> None:
    # MemoryDenyWriteExecute=yes kills a process that maps memory writable and executable. The kernel's
    # PR_SET_MDWE (Linux 6.3+) enforces the same rule on one process: import the daemon's whole stack,
    # make a ctypes callback (libffi closures are the usual culprit) and run an event loop under it.
    modules = [
        "agent.config",
        "agent.store",
        "drivers.registry",
        "drivers.transport",
        "ocpp.v16",
        "websockets",
        "pymodbus.client",
        "serial",
        "serial_asyncio_fast",
        "gpiozero",
    ]
    if importlib.util.find_spec("agent.daemon") is not None:
        modules.append("agent.daemon")
    program = textwrap.dedent(
        f"""\
        import ctypes, errno, mmap, sys
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
            print("no PR_SET_MDWE:", errno.errorcode.get(ctypes.get_errno())); sys.exit(3)
        try:
            mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            print("W+X mapping was allowed: MDWE is not in force"); sys.exit(4)
        except OSError:
            pass
        import asyncio, importlib, sqlite3, ssl
        for name in {modules!r}:
            importlib.import_module(name)
        callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
        assert callback(41) == 42
        ssl.create_default_context()
        sqlite3.connect(":memory:").execute("select 1")
        async def main():
            server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            server.close()
        asyncio.run(main())
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if result.returncode == 3:
        pytest.skip(f"kernel without PR_SET_MDWE: {result.stdout.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")


# ---- scripts/install.sh -----------------------------------------------------------------------------


def _snapshot_source(tmp_path: Path) -> Path:
    """A frozen copy of the files install.sh reads, so concurrent edits of the checkout cannot race a test."""
    source = tmp_path / "src"
    for rel in (
        "pyproject.toml",
        "systemd/evse-agent.service",
        "systemd/evse-agent.toml.example",
        "systemd/evse-agent-venv.service",
        "systemd/evse-agent.sysusers.conf",
        "systemd/evse-agent.tmpfiles.conf",
        "scripts/evse-agent-venv.sh",
        "scripts/wheelhouse.py",
        "packaging/debian-deps.txt",
        "docs/install.md",
    ):
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, source / rel)
    return source


def _install(root: Path, *args: str) -> str:
    """Run install.sh into root; return its output, failing the test on a non-zero exit."""
    result = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _tree(root: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Every path under root with its mode, mtime and content (file bytes or symlink target)."""
    tree: dict[str, tuple[int, int, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            content: bytes | str = os.readlink(path)
        elif path.is_file():
            content = path.read_bytes()
        else:
            content = ""
        tree[str(path.relative_to(root))] = (stat.S_IMODE(st.st_mode), st.st_mtime_ns, content)
    return tree


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    """A snapshot of the checkout to install from."""
    return _snapshot_source(tmp_path)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """An empty directory standing for the target system's /."""
    target = tmp_path / "root"
    target.mkdir()
    return target


def test_install_into_root_creates_everything(source: Path, root: Path) -> None:
    output = _install(root, "--source", str(source), "--no-venv")
    assert "evse-agent install: unchanged" not in output

    unit_file = root / "etc/systemd/system/evse-agent.service"
    assert unit_file.read_bytes() == (source / "systemd/evse-agent.service").read_bytes()
    assert _mode(unit_file) == 0o644

    config_dir = root / "etc/evse-agent"
    assert _mode(config_dir) == 0o750
    for name in ("agent.toml", "agent.toml.example"):
        assert (config_dir / name).read_bytes() == (source / "systemd/evse-agent.toml.example").read_bytes()
        assert _mode(config_dir / name) == 0o640
    assert _mode(root / "var/lib/evse-agent") == 0o750

    assert os.readlink(root / "usr/local/bin/evsectl") == "/opt/evse-agent/venv/bin/evsectl"
    assert not (root / "opt/evse-agent/venv").exists()  # --no-venv
    # --root never touches the tree's account databases: the sysusers.d file does that at first boot
    assert not (root / "etc/passwd").exists()
    assert not (root / "etc/group").exists()


def test_installed_config_loads(source: Path, root: Path) -> None:
    _install(root, "--source", str(source), "--no-venv")
    cfg = load_config(root / "etc/evse-agent/agent.toml")
    assert cfg.charge_point.id == "CP-0001"


def test_sysusers_file(source: Path, root: Path) -> None:
    _install(root, "--source", str(source), "--no-venv")
    conf = root / "usr/lib/sysusers.d/evse-agent.conf"
    assert _mode(conf) == 0o644
    entries = {
        tuple(line.split()[:3])
        for line in conf.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {
        ("g", "dialout", "-"),
        ("g", "gpio", "-"),
        ("g", "evse", "-"),
        ("u", "evse-agent", "-"),
    } <= entries
    assert {("m", "evse-agent", group) for group in ("dialout", "gpio", "evse")} <= entries


def test_sysusers_file_creates_the_accounts(source: Path, root: Path, tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers is not installed")
    _install(root, "--source", str(source), "--no-venv")
    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    result = subprocess.run(
        [sysusers, f"--root={image}", str(root / "usr/lib/sysusers.d/evse-agent.conf")],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0 and os.geteuid() != 0:
        pytest.skip(f"systemd-sysusers --root needs root here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr
    passwd = {line.split(":")[0]: line.split(":") for line in (image / "etc/passwd").read_text().splitlines()}
    assert passwd["evse-agent"][5] == "/var/lib/evse-agent"
    assert passwd["evse-agent"][6] == "/usr/sbin/nologin"
    groups = {
        line.split(":")[0]: line.split(":")[3].split(",")
        for line in (image / "etc/group").read_text().splitlines()
    }
    for group in ("dialout", "gpio", "evse"):
        assert "evse-agent" in groups[group]


def test_second_run_changes_nothing(source: Path, root: Path) -> None:
    _install(root, "--source", str(source), "--no-venv")
    before = _tree(root)
    output = _install(root, "--source", str(source), "--no-venv")
    assert "evse-agent install: unchanged" in output.splitlines()
    assert "changed:" not in output
    assert _tree(root) == before  # not even rewritten with the same content


def test_operator_config_is_never_overwritten(source: Path, root: Path) -> None:
    config_dir = root / "etc/evse-agent"
    config_dir.mkdir(parents=True)
    mine = '[charge_point]\nid = "MY-OWN"\n'
    (config_dir / "agent.toml").write_text(mine, encoding="utf-8")
    _install(root, "--source", str(source), "--no-venv")
    assert (config_dir / "agent.toml").read_text(encoding="utf-8") == mine
    assert (config_dir / "agent.toml.example").read_bytes() == (
        source / "systemd/evse-agent.toml.example"
    ).read_bytes()

    # A newer example is installed beside it; the operator's file still stays.
    example = source / "systemd/evse-agent.toml.example"
    example.write_text(example.read_text(encoding="utf-8") + "# a new comment\n", encoding="utf-8")
    output = _install(root, "--source", str(source), "--no-venv")
    assert "updated" in output and "agent.toml.example" in output
    assert (config_dir / "agent.toml.example").read_text(encoding="utf-8").endswith("# a new comment\n")
    assert (config_dir / "agent.toml").read_text(encoding="utf-8") == mine


def test_install_repairs_changed_files_and_modes(source: Path, root: Path) -> None:
    _install(root, "--source", str(source), "--no-venv")
    unit_file = root / "etc/systemd/system/evse-agent.service"
    unit_file.write_text("[Service]\nExecStart=/bin/false\n", encoding="utf-8")
    (root / "etc/evse-agent/agent.toml.example").chmod(0o644)  # world-readable: must be put back to 0640
    (root / "var/lib/evse-agent").chmod(0o777)
    output = _install(root, "--source", str(source), "--no-venv")
    assert "evse-agent install: 3 change(s)" in output
    assert unit_file.read_bytes() == (source / "systemd/evse-agent.service").read_bytes()
    assert _mode(root / "etc/evse-agent/agent.toml.example") == 0o640
    assert _mode(root / "var/lib/evse-agent") == 0o750
    again = _install(root, "--source", str(source), "--no-venv")
    assert "evse-agent install: unchanged" in again.splitlines()


def test_default_source_is_the_scripts_checkout(root: Path) -> None:
    _install(root, "--no-venv")
    assert (root / "etc/systemd/system/evse-agent.service").read_bytes() == UNIT.read_bytes()


@pytest.mark.parametrize(
    "args",
    [["--bogus"], ["--source", "/nonexistent"], ["--source"], ["--root", "/nonexistent/dir"]],
)
def test_install_refuses_bad_arguments(root: Path, args: list[str]) -> None:
    command = [
        "bash",
        str(INSTALL),
        *(["--root", str(root)] if "--root" not in args else []),
        "--no-venv",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, check=False)
    assert result.returncode != 0
    assert "error" in result.stderr
    assert list(root.iterdir()) == []  # refused before touching anything


@pytest.mark.soak
def test_install_image_tree_builds_the_wheels(tmp_path: Path, root: Path) -> None:
    # Slow and needs the package index: builds the wheelhouse from a snapshot of the checkout. An image tree
    # gets wheels and no venv (the first boot builds it: tests/test_packaging.py runs that step).
    source = tmp_path / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", "dist", ".*_cache"),
    )
    output = _install(root, "--source", str(source), "--python", sys.executable)
    wheels = root / "opt/evse-agent/wheels"
    names = sorted(path.name for path in wheels.glob("*.whl"))
    assert any(name.startswith("evse_agent-") for name in names), names
    assert any(name.startswith("ocpp-") for name in names), names
    assert all(name.endswith("-none-any.whl") for name in names), names
    assert not (root / "opt/evse-agent/venv").exists()
    assert "created virtualenv" not in output
    assert not (source / "build").exists()  # built from a copy, the checkout stays clean

    before = _tree(root)
    second = _install(root, "--source", str(source), "--python", sys.executable)
    assert "evse-agent install: unchanged" in second.splitlines()  # the same source gives the same wheel
    assert _tree(root) == before

    (source / "agent" / "config" / "schema.py").write_text(
        (source / "agent" / "config" / "schema.py").read_text() + "\n# changed\n"
    )
    third = _install(root, "--source", str(source), "--python", sys.executable)
    assert "evse-agent install: 1 change(s)" in third.splitlines(), third
    assert "evse_agent-" in third
