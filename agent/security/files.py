"""The security files in the state directory: secrets written 0600, the AuthorizationKey file, and the
permission check made before the daemon starts."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from agent.config import AgentConfig
from agent.security.events import SecurityError

KEY_FILE = "authorization_key"  # AuthorizationKey set over OCPP, in the state directory, mode 0600
CERT_DIR = "certs"

def write_secret(path: Path, data: bytes) -> None:
    """Write a file atomically with mode 0600 (never readable by anyone else, not even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_local_permissions(config_path: str | Path, cfg: AgentConfig) -> list[str]:
    """Problems with who may change the config or read the secrets; empty when the start is safe."""
    problems: list[str] = []

    def mode_of(path: Path) -> int | None:
        try:
            return stat.S_IMODE(path.stat().st_mode)
        except OSError:
            return None

    config = Path(config_path)
    mode = mode_of(config)
    if mode is not None and mode & stat.S_IWOTH:
        problems.append(f"{config} is writable by every user (mode {mode:04o}): run chmod o-w {config}")
    secrets = [cfg.backoffice.authorization_key_file, cfg.backoffice.client_key_file,
               str(Path(cfg.state.directory) / KEY_FILE), str(Path(cfg.state.directory) / CERT_DIR / "cp" / "key.pem")]
    for name in secrets:
        if not name:
            continue
        path = Path(name)
        mode = mode_of(path)
        if mode is not None and mode & 0o077:
            problems.append(f"{path} holds a secret but is readable or writable by group or others "
                            f"(mode {mode:04o}): run chmod 600 {path}")
    return problems


def read_key_file(path: Path) -> str:
    """An AuthorizationKey file: the key on its first line."""
    try:
        return path.read_text(encoding="utf-8").strip().splitlines()[0].strip()
    except (OSError, IndexError, UnicodeDecodeError) as err:
        raise SecurityError(f"cannot read the AuthorizationKey from {path}: {err}") from err
