"""The back office's message log: every frame in both directions, CALLs paired with their answers."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, TextIO

from simulator.backoffice.schemas import CALL, CALLERROR, CALLRESULT


class MessageLog:
    """Every frame in both directions and the CALLs paired with their answers.

    The file holds one JSON object a line: a frame {"ts", "cp_id", "direction", "message"} ("raw" instead of
    "message" when the text was not JSON), or a violation {"violation": {...}}.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.frames: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self._open: dict[tuple[str, str, str], dict[str, Any]] = {}  # (cp_id, call direction, uid) -> call
        self._by_uid: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open(
                "a", encoding="utf-8", buffering=1
            )  # line-buffered: other processes tail it

    def add(self, cp_id: str, direction: str, raw: str | bytes, frame: object) -> None:
        """Append one frame; pair a CALLRESULT/CALLERROR with the CALL it answers."""
        ts = time.time()
        entry: dict[str, Any] = {"ts": ts, "cp_id": cp_id, "direction": direction}
        if isinstance(frame, list):
            entry["message"] = frame
        else:
            entry["raw"] = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        self.frames.append(entry)
        if self._file is not None:
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
        if not isinstance(frame, list) or len(frame) < 2 or not isinstance(frame[1], str):
            return
        kind, uid = frame[0], frame[1]
        if kind == CALL and len(frame) == 4:
            call = {
                "ts": ts,
                "cp_id": cp_id,
                "direction": direction,
                "unique_id": uid,
                "action": frame[2],
                "payload": frame[3],
                "response": None,
            }
            self.calls.append(call)
            self._open[(cp_id, direction, uid)] = call
            self._by_uid[(cp_id, direction, uid)] = call
        elif kind in (CALLRESULT, CALLERROR):
            call_direction = "out" if direction == "in" else "in"
            answered = self._open.pop((cp_id, call_direction, uid), None)
            if answered is None:
                return
            if kind == CALLRESULT:
                answered["response"] = {
                    "ts": ts,
                    "type": "result",
                    "payload": frame[2] if len(frame) > 2 else None,
                }
            else:
                answered["response"] = {
                    "ts": ts,
                    "type": "error",
                    "code": frame[2] if len(frame) > 2 else None,
                    "description": frame[3] if len(frame) > 3 else None,
                    "details": frame[4] if len(frame) > 4 else None,
                }

    def add_violation(self, entry: dict[str, Any]) -> None:
        """Append one violation to the file as {"violation": {...}} (the BackOffice keeps the list)."""
        if self._file is not None:
            self._file.write(json.dumps({"violation": entry}, separators=(",", ":")) + "\n")

    def find_call(self, cp_id: str, direction: str, uid: str) -> dict[str, Any] | None:
        """The latest CALL with this unique id in this direction."""
        return self._by_uid.get((cp_id, direction, uid))

    def query(
        self, cp_id: str | None = None, action: str | None = None, direction: str | None = "in"
    ) -> list[dict[str, Any]]:
        """CALLs (copies) filtered by charge point, action and direction (None = both)."""
        return [
            copy.deepcopy(c)
            for c in self.calls
            if (cp_id is None or c["cp_id"] == cp_id)
            and (action is None or c["action"] == action)
            and (direction is None or c["direction"] == direction)
        ]

    def clear(self) -> None:
        """Forget the in-memory history (the file keeps it)."""
        self.frames.clear()
        self.calls.clear()
        self._open.clear()
        self._by_uid.clear()

    def close(self) -> None:
        """Close the log file."""
        if self._file is not None:
            self._file.close()
            self._file = None

