"""One error tree for the agent; sqlite3 and OS errors are wrapped at the store boundary."""

from __future__ import annotations


class AgentError(Exception):
    """Base of every agent error; the message says what happened and what the operator can do."""


class StoreError(AgentError):
    """The state database cannot be used: unwritable directory, newer schema, unknown record, I/O error."""


class DamagedDatabase(StoreError):
    """The state database file is corrupt (garbage header, torn pages, not an SQLite file)."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"state database {path} is damaged (sqlite says: {detail}). Stop the agent, move the file aside "
            f"(mv {path} {path}.damaged; remove {path}-wal and {path}-shm too) and restart: a fresh database "
            f"is created. Queued messages may be salvaged with: sqlite3 {path}.damaged .recover"
        )
        self.path = path
        self.detail = detail


class DiskFull(StoreError):
    """The file system holding the state database is full; nothing more can be committed."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"no space left for state database {path} (sqlite says: {detail}). Free space on that file "
            f"system (old logs, diagnostics bundles); queued messages are kept"
        )
        self.path = path
        self.detail = detail


class CallRefused(AgentError):
    """The back office answered a call with a CALLERROR: it is online, but gave no usable answer."""
