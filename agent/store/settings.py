"""Persisted settings: configuration values, charging profiles and connector availability."""

from __future__ import annotations

import json
from typing import Any

from agent.store.db import Db, _dumps


class SettingsMixin(Db):
    """Configuration, charging profiles and availability of Store."""

    def config_get(self, key: str) -> str | None:
        """A persisted configuration value, or None when never set."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM config WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def config_set(self, key: str, value: str) -> None:
        """Persist a configuration value."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO config (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def config_delete(self, key: str) -> None:
        """Forget a persisted configuration value (back to the default)."""
        with self._write() as conn:
            conn.execute("DELETE FROM config WHERE key = ?", (key,))

    def config_all(self) -> dict[str, str]:
        """Every persisted configuration value."""
        with self._read() as conn:
            return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM config ORDER BY key")}

    def protocol_in_use(self) -> str | None:
        """The OCPP version the agent last ran with on this database (None before it was recorded)."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'ocpp_version'").fetchone()
        return None if row is None else str(row[0])

    def set_protocol_in_use(self, version: str) -> None:
        """Record the OCPP version this run speaks (a later switch knows which version open transactions began in)."""
        with self._write() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('ocpp_version', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (version,))

    def reservations_get(self) -> list[dict[str, Any]]:
        """The reservations held when last persisted ([] when none or unreadable)."""
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'reservations'").fetchone()
        if row is None:
            return []
        try:
            value = json.loads(row[0])
        except ValueError:
            return []
        return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []

    def reservations_set(self, reservations: list[dict[str, Any]]) -> None:
        """Persist the reservations held now (replacing the previous set)."""
        with self._write() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('reservations', ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (json.dumps(reservations, separators=(",", ":")),))

    # ------------------------------------------------------------------ charging profiles

    def profile_put(self, connector_id: int, profile: dict[str, Any]) -> None:
        """Install or replace a charging profile (1.6 chargingProfileId or 2.0.1 id is the key)."""
        profile_id = profile.get("chargingProfileId", profile.get("id"))
        if not isinstance(profile_id, int):
            raise ValueError(f"charging profile without an integer chargingProfileId/id: {profile!r}")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO charging_profiles (profile_id, connector_id, profile) VALUES (?, ?, ?) "
                "ON CONFLICT(profile_id) DO UPDATE SET connector_id = excluded.connector_id, "
                "profile = excluded.profile",
                (profile_id, connector_id, _dumps(profile)),
            )

    def profile_delete(self, profile_id: int) -> bool:
        """Remove a charging profile; True when it existed."""
        with self._write() as conn:
            return (
                conn.execute("DELETE FROM charging_profiles WHERE profile_id = ?", (profile_id,)).rowcount > 0
            )

    def profiles(self) -> list[tuple[int, dict[str, Any]]]:
        """Every installed profile as (connector_id, profile), ordered by profile id."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT connector_id, profile FROM charging_profiles ORDER BY profile_id"
            ).fetchall()
        return [(int(c), json.loads(p)) for c, p in rows]

    # ------------------------------------------------------------------ availability

    def availability_get(self, connector_id: int) -> bool:
        """Whether a connector (0 = the whole charge point) is Operative; True when never set."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT operative FROM availability WHERE connector_id = ?", (connector_id,)
            ).fetchone()
        return True if row is None else bool(row[0])

    def availability_set(self, connector_id: int, operative: bool) -> None:
        """Persist ChangeAvailability so it survives a reboot."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO availability (connector_id, operative) VALUES (?, ?) "
                "ON CONFLICT(connector_id) DO UPDATE SET operative = excluded.operative",
                (connector_id, int(operative)),
            )

