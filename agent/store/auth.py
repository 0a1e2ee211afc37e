"""Authorization: the local authorization list with its version, and the LRU authorization cache."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from agent.store.db import Db


@dataclass(frozen=True)
class AuthEntry:
    """An idTag with its idTagInfo; status None in a differential SendLocalList means "remove"."""

    id_tag: str
    status: str | None
    expiry_date: str | None = None  # ISO 8601, as the back office sent it
    parent_id_tag: str | None = None



class AuthMixin(Db):
    """The local list and the authorization cache of Store."""

    _lru_counter = 0  # last_used of the most recent cache use, restored at open

    def _restore_lru_counter(self) -> None:
        """At open: continue the cache's use counter where the previous run left it."""
        with self._read() as rconn:
            self._lru_counter = rconn.execute("SELECT COALESCE(MAX(last_used), 0) FROM auth_cache").fetchone()[0]

    def local_list_version(self) -> int:
        """The local authorization list version (0 = no list received)."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'local_list_version'").fetchone()
        return 0 if row is None else int(row[0])

    def _write_list_entries(self, conn: sqlite3.Connection, entries: list[AuthEntry]) -> None:
        """Upsert entries; an entry with status None is removed."""
        for entry in entries:
            if entry.status is None:
                conn.execute("DELETE FROM local_list WHERE id_tag = ?", (entry.id_tag,))
            else:
                conn.execute(
                    "INSERT INTO local_list (id_tag, status, expiry_date, parent_id_tag) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(id_tag) DO UPDATE SET status = excluded.status, "
                    "expiry_date = excluded.expiry_date, parent_id_tag = excluded.parent_id_tag",
                    (entry.id_tag, entry.status, entry.expiry_date, entry.parent_id_tag),
                )

    @staticmethod
    def _set_list_version(conn: sqlite3.Connection, version: int) -> None:
        """Store the list version in the same transaction as the entries."""
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('local_list_version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(version),),
        )

    def replace_local_list(self, version: int, entries: list[AuthEntry]) -> None:
        """SendLocalList Full: the list becomes exactly `entries` (status None entries are skipped)."""
        with self._write() as conn:
            conn.execute("DELETE FROM local_list")
            self._write_list_entries(conn, entries)
            self._set_list_version(conn, version)

    def update_local_list(self, version: int, entries: list[AuthEntry]) -> None:
        """SendLocalList Differential: upsert entries, remove those with status None."""
        with self._write() as conn:
            self._write_list_entries(conn, entries)
            self._set_list_version(conn, version)

    def local_list_get(self, id_tag: str) -> AuthEntry | None:
        """The local list entry of an idTag."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT id_tag, status, expiry_date, parent_id_tag FROM local_list WHERE id_tag = ?",
                (id_tag,),
            ).fetchone()
        return None if row is None else AuthEntry(*row)

    def local_list_count(self) -> int:
        """Entries in the local list (for LocalAuthListMaxLength)."""
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM local_list").fetchone()[0])

    def cache_get(self, id_tag: str) -> AuthEntry | None:
        """The cached idTagInfo of an idTag; a hit counts as a use for the LRU eviction."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT id_tag, status, expiry_date, parent_id_tag FROM auth_cache WHERE id_tag = ?",
                (id_tag,),
            ).fetchone()
            if row is None:
                return None
            self._lru_counter += 1
            conn.execute("UPDATE auth_cache SET last_used = ? WHERE id_tag = ?", (self._lru_counter, id_tag))
        return AuthEntry(*row)

    def cache_put(self, entry: AuthEntry) -> None:
        """Cache an idTagInfo, evicting the least recently used entries beyond cache_capacity."""
        if entry.status is None:
            raise ValueError("a cached authorization needs a status")
        with self._write() as conn:
            self._lru_counter += 1
            conn.execute(
                "INSERT INTO auth_cache (id_tag, status, expiry_date, parent_id_tag, last_used) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id_tag) DO UPDATE SET status = excluded.status, "
                "expiry_date = excluded.expiry_date, parent_id_tag = excluded.parent_id_tag, "
                "last_used = excluded.last_used",
                (entry.id_tag, entry.status, entry.expiry_date, entry.parent_id_tag, self._lru_counter),
            )
            excess = int(conn.execute("SELECT COUNT(*) FROM auth_cache").fetchone()[0]) - self.cache_capacity
            if excess > 0:
                conn.execute(
                    "DELETE FROM auth_cache WHERE id_tag IN "
                    "(SELECT id_tag FROM auth_cache ORDER BY last_used LIMIT ?)",
                    (excess,),
                )

    def cache_forget(self, id_tag: str) -> bool:
        """Remove one idTag from the cache; whether it was there."""
        with self._write() as conn:
            return conn.execute("DELETE FROM auth_cache WHERE id_tag = ?", (id_tag,)).rowcount > 0

    def cache_clear(self) -> None:
        """ClearCache: forget every cached idTag."""
        with self._write() as conn:
            conn.execute("DELETE FROM auth_cache")

    def cache_count(self) -> int:
        """Entries in the authorization cache."""
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM auth_cache").fetchone()[0])

