"""The diagnostics archive: what `evsectl bundle` writes and GetDiagnostics uploads.

Config with secrets removed, recent logs and OCPP frames, a summary of the database (never the payloads of
the auth list), the problem reports since the last archive with their snapshots, versions and device health.
It holds nothing a back office must not see.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import platform
import tarfile
import time
from pathlib import Path
from typing import Any, Protocol

from agent.cardid import masked_cards
from agent.config import AgentConfig
from agent.framelog import FRAMES, flush_frames
from agent.ports import ConfigVocabulary
from agent.store import Store

PACKAGES = ("evse-agent", "ocpp", "websockets", "pymodbus", "pyserial", "gpiozero")
MAX_LOG_BYTES = 5_000_000
MAX_PROBLEM_REPORTS = 20  # problem reports (each with up to 200 log lines) per archive: the newest are kept
PROBLEMS_BUNDLED_KEY = "bundle.problems_after"  # ops_state: the last problem report an archive carried


class BundleSource(Protocol):
    """What the archive is made of: the config, the store, the protocol configuration and the status picture."""

    @property
    def config(self) -> AgentConfig: ...

    @property
    def store(self) -> Store: ...

    @property
    def keys(self) -> ConfigVocabulary: ...

    def status(self) -> dict[str, Any]: ...


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o640
    tar.addfile(info, io.BytesIO(data))


def _in_window(line: str, start: float | None, stop: float | None) -> bool:
    if start is None and stop is None:
        return True
    try:
        stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return True  # continuation lines stay with their record
    return (start is None or stamp >= start) and (stop is None or stamp <= stop)


def _problem_reports(store: Store) -> tuple[list[dict[str, Any]], int | None]:
    """The problem reports (with their snapshots) since the last archive, newest first, and the newest id."""
    after = int(store.ops_state().get(PROBLEMS_BUNDLED_KEY, "0") or 0)
    events = [e for e in store.ops_events(MAX_PROBLEM_REPORTS, kind="problem") if e.id > after]
    reports = [{"reportId": e.id, "connector": e.connector_id, "wall_time": e.wall_time,
                "clock_trusted": e.clock_trusted, **e.detail} for e in events]
    return reports, (events[0].id if events else None)


def write_bundle(source: BundleSource, dest_dir: Path, log_lines: list[str], *, start: float | None = None,
                 stop: float | None = None) -> Path:
    """Write the archive into dest_dir and return its path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = dest_dir / f"diagnostics-{source.config.charge_point.id}-{stamp}.tar.gz"
    store = source.store
    summary: dict[str, Any] = {
        "outbox": store.outbox_stats(),
        "dead_letters": [{"id": d.id, "action": d.action, "attempts": d.attempts, "error": d.error}
                         for d in store.dead_letters(100)],
        "local_list": {"version": store.local_list_version(), "entries": store.local_list_count()},
        "cache_entries": store.cache_count(),
        "recent_transactions": [
            {"tx_local_id": r.tx_local_id, "station_tx_id": r.station_tx_id, "transaction_id": r.transaction_id,
             "connector": r.connector_id, "start": r.start_wall, "stop": r.stop_wall, "reason": r.stop_reason,
             "meter_start_wh": r.meter_start_wh, "meter_stop_wh": r.meter_stop_wh}
            for r in store.recent_transactions(50)
        ],
    }
    ocpp_keys, _ = source.keys.entries()
    problems, newest_problem = _problem_reports(store)
    tmp = path.with_name(path.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        _add(tar, "config.json", json.dumps(source.config.redacted(), indent=2, default=str).encode())
        _add(tar, "ocpp-keys.json", json.dumps(ocpp_keys, indent=2).encode())
        status = source.status()
        if "cards" in status:  # the archive leaves the station: card ids masked beyond their last four
            status["cards"] = masked_cards(status["cards"])
        _add(tar, "status.json", json.dumps(status, indent=2, default=str).encode())
        _add(tar, "database.json", json.dumps(summary, indent=2, default=str).encode())
        _add(tar, "problem-reports.json", json.dumps(problems, indent=2, default=str).encode())
        _add(tar, "versions.json", json.dumps(_versions(), indent=2).encode())
        text = "\n".join(line for line in log_lines if _in_window(line, start, stop))
        _add(tar, "agent.log", text.encode()[-MAX_LOG_BYTES:])
        frames = Path(source.config.state.directory) / "ocpp-frames.log"
        flush_frames()  # the frame log notes frames and buffers lines for up to a second (agent/framelog.py)
        for handler in FRAMES.handlers:
            handler.flush()
        for candidate in sorted(frames.parent.glob(frames.name + "*")):
            data = candidate.read_bytes()[-MAX_LOG_BYTES:]
            lines = [ln for ln in data.decode(errors="replace").splitlines() if _in_window(ln, start, stop)]
            _add(tar, candidate.name, "\n".join(lines).encode())
    tmp.replace(path)
    if newest_problem is not None:  # the next archive starts after these (only once this one exists)
        store.ops_set_state({PROBLEMS_BUNDLED_KEY: str(newest_problem)})
    return path
