"""The local security log, capped at SECURITY_LOG_CAPACITY rows."""

from __future__ import annotations

from dataclasses import dataclass

from agent.store.db import Db

SECURITY_LOG_CAPACITY = 10_000  # local security log rows; the oldest are dropped

@dataclass(frozen=True)
class SecurityEvent:
    """One row of the local security log."""

    id: int
    event_type: str
    tech_info: str | None
    boot_id: str
    wall_time: float
    clock_trusted: bool



class SecurityLogMixin(Db):
    """The security log of Store."""

    def security_log_append(
        self, event_type: str, tech_info: str | None, *, wall_time: float, clock_trusted: bool
    ) -> int:
        """Append to the local security log (capped at SECURITY_LOG_CAPACITY rows); returns the row id."""
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO security_log (event_type, tech_info, boot_id, wall_time, clock_trusted) "
                "VALUES (?, ?, ?, ?, ?)",
                (event_type, tech_info, self.boot_id, wall_time, int(clock_trusted)),
            )
            row_id = int(cursor.lastrowid or 0)
            conn.execute("DELETE FROM security_log WHERE id <= ?", (row_id - SECURITY_LOG_CAPACITY,))
        return row_id

    def security_log(self, limit: int = 100) -> list[SecurityEvent]:
        """The latest security events, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, event_type, tech_info, boot_id, wall_time, clock_trusted FROM security_log "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [SecurityEvent(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

