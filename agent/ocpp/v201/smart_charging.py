"""OCPP 2.0.1 K01-K10 smart charging: SetChargingProfile, GetChargingProfiles, ClearChargingProfile,
GetCompositeSchedule, and the TxProfile of RequestStartTransaction (K05).

The handlers translate 2.0.1's EVSE numbering to the agent's connectors and hand parsed profiles to the same
core limits as 1.6 (`core.set_charging_profile`, `clear_charging_profile`, `composite_schedule`), so a profile
reaches the contactor and the pilot or DC controller exactly as a 1.6 one does. The store keeps each installed
profile's JSON as received (wire form, keyed by `id`, on the agent connector; 0 = the station), so a restart
restores them and GetChargingProfiles reports them as sent; the core's list says which ones are live.

Rules of this station, beyond the schema:
- ChargingStationMaxProfile on evseId 0 only, one limit shared by every EVSE (the core splits it);
  TxDefaultProfile on 0 (every EVSE) or on one EVSE; TxProfile only on an EVSE running the transaction its
  transactionId names; ChargingStationExternalConstraints is refused (K01.FR.22).
- Two profiles of one purpose and stack level on one EVSE are refused as DuplicateProfile whatever their
  validity periods (stricter than K01.FR.06, which refuses only overlapping ones: the core keeps one profile
  per purpose, stack level and connector); so are a TxDefaultProfile on 0 and one on an EVSE at the same
  stack level (K01.FR.52/53).
- SmartChargingCtrlr.ProfileStackLevel, PeriodsPerSchedule and Entries[ChargingProfiles] bound every
  profile; up to three chargingSchedule entries are accepted, the first one is applied (agent/ocpp/v201/profiles.py).
- A TxDefaultProfile for an EVSE with several connectors is refused (UnsupportedParam): the core holds a
  profile on one connector, and a limit missing on the other connector would not be safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from ocpp.routing import after, on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from agent.clock import iso
from agent.core import events as ev
from agent.core.limits import CompositePeriod
from agent.core.profiles import ChargingProfile, ProfilePurpose
from agent.ocpp.schedules import schedule_periods
from agent.ocpp.v201.handler_base import HandlerBase
from agent.ocpp.v201.profiles import (
    DUPLICATE_PROFILE,
    INVALID_STACK_LEVEL,
    INVALID_VALUE,
    LIMIT_SOURCE,
    MISSING_PARAM,
    OUT_OF_STORAGE,
    PURPOSES,
    TOO_MANY_ELEMENTS,
    TX_NOT_FOUND,
    UNKNOWN_EVSE,
    UNSUPPORTED_PARAM,
    ProfileError,
    encode_profile,
    parse_profile,
    schedule_period_counts,
    wire_form,
    wire_purpose,
    wire_transaction_id,
)

LOGGER = logging.getLogger(__name__)

REPORT_PROFILES_PER_MESSAGE = 20  # ReportChargingProfiles parts stay small; Entries bounds the total anyway


class SmartChargingHandlers(HandlerBase):
    """Handlers of `V201ChargePoint` for K01-K10 smart charging."""

    # ---- K01 SetChargingProfile --------------------------------------------------------------------------

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any], **_: Any) -> Any:
        raw = wire_form(charging_profile)
        try:
            connector_id, profile = self._placed_profile(evse_id, raw)
        except ProfileError as err:
            LOGGER.warning("SetChargingProfile %s on evse %d rejected: %s %s", raw.get("id"), evse_id,
                           err.reason_code, err)
            return call_result.SetChargingProfile(status="Rejected", status_info=err.status_info())
        result, outs = self.agent.core.set_charging_profile(ev.SetChargingProfile(connector_id, profile),
                                                            self.agent.now(), time.monotonic())
        self.agent.execute(outs)
        if result is not ev.ProfileResult.ACCEPTED:  # the core's own install rules (checked above already)
            return call_result.SetChargingProfile(status="Rejected", status_info={"reason_code": INVALID_VALUE})
        self.agent.store.profile_put(connector_id, raw)
        self._prune_stored_profiles()
        LOGGER.info("charging profile %d (%s, stack level %d) installed on evse %d", profile.profile_id,
                    raw.get("chargingProfilePurpose"), profile.stack_level, evse_id)
        return call_result.SetChargingProfile(status="Accepted")

    def _placed_profile(self, evse_id: int, raw: dict[str, Any]) -> tuple[int, ChargingProfile]:
        """The agent connector (0 = station) and the parsed profile SetChargingProfile installs; ProfileError."""
        if evse_id < 0 or (evse_id > 0 and not self._evse_connectors(evse_id)):
            raise ProfileError(UNKNOWN_EVSE, f"there is no EVSE {evse_id}")
        profile = parse_profile(raw)
        connector_id = self._connector_for(evse_id, profile, wire_transaction_id(raw), require_tx_id=True)
        self._check_limits(profile, raw, connector_id)
        return connector_id, profile

    def _connector_for(self, evse_id: int, profile: ChargingProfile, tx_id: str | None, *,
                       require_tx_id: bool) -> int:
        """Where the core holds a profile for this EVSE: 0 for the station, else the EVSE's connector."""
        purpose = profile.purpose
        if purpose is ProfilePurpose.CHARGE_POINT_MAX:
            if evse_id != 0:
                raise ProfileError(INVALID_VALUE, "a ChargingStationMaxProfile must be on evseId 0")
            return 0
        if purpose is ProfilePurpose.TX_DEFAULT:
            if evse_id == 0:
                return 0
            ids = self._evse_connectors(evse_id)
            if len(ids) > 1:
                raise ProfileError(UNSUPPORTED_PARAM, f"EVSE {evse_id} has several connectors: a "
                                                      "TxDefaultProfile is taken for evseId 0 or one-connector EVSEs")
            return ids[0]
        if evse_id == 0:
            raise ProfileError(INVALID_VALUE, "a TxProfile needs an EVSE (evseId > 0)")
        if tx_id is None:
            if require_tx_id:  # K01.FR.03
                raise ProfileError(MISSING_PARAM, "a TxProfile needs the transactionId it applies to")
            return self._evse_connectors(evse_id)[0]
        for cid in self._evse_connectors(evse_id):
            session = self.agent.core.session(cid)
            if session is None:
                continue
            row = self.agent.store.transaction(session.local_tx_id)
            if row is not None and row.station_tx_id == tx_id:
                return cid
        raise ProfileError(TX_NOT_FOUND, f"no running transaction {tx_id} on EVSE {evse_id}")

    def _check_limits(self, profile: ChargingProfile, raw: dict[str, Any], connector_id: int) -> None:
        """The SmartChargingCtrlr bounds and the duplicate rules, with the reason the core would not say."""
        settings = self.agent.core.settings
        if profile.stack_level > settings.max_stack_level:
            raise ProfileError(INVALID_STACK_LEVEL, f"stackLevel above ProfileStackLevel ({settings.max_stack_level})")
        if any(n > settings.max_schedule_periods for n in schedule_period_counts(raw)):
            raise ProfileError(TOO_MANY_ELEMENTS, f"more periods than PeriodsPerSchedule "
                                                  f"({settings.max_schedule_periods})")
        others = [p for p in self.agent.core.profiles if p.profile_id != profile.profile_id]
        for other in others:
            if other.purpose is not profile.purpose or other.stack_level != profile.stack_level:
                continue
            same_place = other.connector_id == connector_id
            # K01.FR.52/53: a station-wide and an EVSE TxDefaultProfile may not share a stack level
            across = profile.purpose is ProfilePurpose.TX_DEFAULT and 0 in (other.connector_id, connector_id)
            if same_place or across:
                raise ProfileError(DUPLICATE_PROFILE, f"profile {other.profile_id} has this purpose and stack level")
        if len(others) + 1 > settings.max_profiles_installed:
            raise ProfileError(OUT_OF_STORAGE, f"Entries[ChargingProfiles] ({settings.max_profiles_installed}) "
                                               "profiles are installed")

    # ---- K05 the TxProfile of RequestStartTransaction ------------------------------------------------------

    def remote_start_profile(self, charging_profile: dict[str, Any] | None,
                             connector_id: int | None) -> tuple[ChargingProfile | None, dict[str, Any] | None]:
        """The parsed TxProfile of a RequestStartTransaction and its wire form (None, None without one);
        ProfileError when it is not a valid TxProfile (the start is then rejected, K05.FR.02/03)."""
        if charging_profile is None:
            return None, None
        raw = wire_form(charging_profile)
        profile = parse_profile(raw, connector_id or 0)
        if profile.purpose is not ProfilePurpose.TX:
            raise ProfileError(INVALID_VALUE, "the chargingProfile of RequestStartTransaction must be a TxProfile")
        if wire_transaction_id(raw) is not None:
            raise ProfileError(INVALID_VALUE, "a transaction that has not started has no transactionId yet")
        connector_id = self._start_connector(connector_id)
        if connector_id is None:
            # the core places the start at the first plug-in, and a profile cannot follow it there: refused,
            # rather than a transaction without the limit the CSMS asked for
            raise ProfileError(UNSUPPORTED_PARAM, "a chargingProfile needs evseId on a station with several EVSEs")
        self._check_limits(profile, raw, connector_id)
        return profile, raw

    def _start_connector(self, connector_id: int | None) -> int | None:
        """The connector a RequestStartTransaction uses: the EVSE's, or the only one the station has."""
        if connector_id is None and len(self.agent.core.connectors) == 1:
            return next(iter(self.agent.core.connectors))
        return connector_id

    def remember_remote_start_profile(self, connector_id: int | None, raw: dict[str, Any] | None) -> None:
        """Keep the JSON of an accepted start's TxProfile, reported once the transaction installs it."""
        connector_id = self._start_connector(connector_id)
        if raw is not None and connector_id is not None:
            self.agent.store.profile_put(connector_id, raw)

    # ---- K09 GetChargingProfiles ------------------------------------------------------------------------

    @on(Action.get_charging_profiles)
    def on_get_charging_profiles(self, request_id: int, charging_profile: dict[str, Any],
                                 evse_id: int | None = None, **_: Any) -> Any:
        if not self._reports(charging_profile, evse_id):
            return call_result.GetChargingProfiles(status="NoProfiles")
        return call_result.GetChargingProfiles(status="Accepted")

    @after(Action.get_charging_profiles)
    async def after_get_charging_profiles(self, request_id: int, charging_profile: dict[str, Any],
                                          evse_id: int | None = None, **_: Any) -> None:
        parts = self._reports(charging_profile, evse_id)
        for n, (evse, profiles) in enumerate(parts):
            payload = {"requestId": request_id, "chargingLimitSource": LIMIT_SOURCE, "evseId": evse,
                       "chargingProfile": profiles, "tbc": n < len(parts) - 1}
            if await self.conn.send_plain("ReportChargingProfiles", payload) is None:
                return  # not queued: the CSMS asks again

    def _reports(self, criterion: dict[str, Any], evse_id: int | None) -> list[tuple[int, list[dict[str, Any]]]]:
        """The ReportChargingProfiles parts a request selects: (evseId, profiles), one EVSE at a time."""
        wanted_purpose = criterion.get("charging_profile_purpose")
        stack_level = criterion.get("stack_level")
        ids = criterion.get("charging_profile_id")
        wanted_ids = set(ids[: self.agent.core.settings.max_profiles_installed]) if ids else None
        sources = criterion.get("charging_limit_source")
        if sources and LIMIT_SOURCE not in sources:
            return []
        if evse_id is not None and evse_id > 0 and not self._evse_connectors(evse_id):
            return []
        by_evse: dict[int, list[dict[str, Any]]] = {}
        for profile in sorted(self.agent.core.profiles, key=lambda p: p.profile_id):
            evse = 0 if profile.connector_id == 0 else self.evse_of(profile.connector_id)[0]
            if evse_id is not None and evse != evse_id:
                continue
            if wanted_purpose is not None and PURPOSES.get(wanted_purpose) is not profile.purpose:
                continue
            if stack_level is not None and profile.stack_level != stack_level:
                continue
            if wanted_ids is not None and profile.profile_id not in wanted_ids:
                continue
            by_evse.setdefault(evse, []).append(self._reported(profile))
        return [(evse, chunk[i:i + REPORT_PROFILES_PER_MESSAGE])
                for evse, chunk in sorted(by_evse.items())
                for i in range(0, len(chunk), REPORT_PROFILES_PER_MESSAGE)]

    def _reported(self, profile: ChargingProfile) -> dict[str, Any]:
        """A live profile as a ChargingProfileType: the JSON as received, else encoded from the core's."""
        tx_id = None
        if profile.purpose is ProfilePurpose.TX and (session := self.agent.core.session(profile.connector_id)):
            row = self.agent.store.transaction(session.local_tx_id)
            tx_id = row.station_tx_id if row is not None and row.station_tx_id else None
        for connector_id, raw in self.agent.store.profiles():
            if (raw.get("id") == profile.profile_id and connector_id == profile.connector_id
                    and PURPOSES.get(wire_purpose(raw) or "") is profile.purpose):
                out = dict(raw)
                if tx_id is not None:
                    out["transactionId"] = tx_id  # K05: a start's TxProfile names its transaction once it runs
                return out
        return encode_profile(profile, tx_id)

    # ---- K10 ClearChargingProfile -------------------------------------------------------------------------

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, charging_profile_id: int | None = None,
                                  charging_profile_criteria: dict[str, Any] | None = None, **_: Any) -> Any:
        criteria = charging_profile_criteria or {}
        wire = criteria.get("charging_profile_purpose")
        purpose = PURPOSES.get(wire) if wire is not None else None
        evse_id = criteria.get("evse_id")
        stack_level = criteria.get("stack_level")
        if charging_profile_id is None and wire is not None and purpose is None:
            # ChargingStationExternalConstraints: never installed by the CSMS, never cleared by it (K10.FR.04)
            return call_result.ClearChargingProfile(status="Unknown")
        targets: Iterable[int | None]
        if charging_profile_id is not None or evse_id is None:
            targets = [None]
        elif evse_id == 0:
            targets = [0]
        else:
            targets = self._evse_connectors(evse_id)
        cleared = False
        for connector_id in targets:
            result, outs = self.agent.core.clear_charging_profile(
                ev.ClearChargingProfile(charging_profile_id, connector_id,
                                        purpose.value if purpose is not None else None, stack_level),
                self.agent.now(), time.monotonic())
            self.agent.execute(outs)
            cleared = cleared or result is ev.ClearProfileResult.ACCEPTED
        self._prune_stored_profiles()
        return call_result.ClearChargingProfile(status="Accepted" if cleared else "Unknown")

    # ---- K08 GetCompositeSchedule -------------------------------------------------------------------------

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, duration: int, evse_id: int,
                                  charging_rate_unit: str | None = None, **_: Any) -> Any:
        if evse_id < 0 or (evse_id > 0 and not self._evse_connectors(evse_id)):
            return call_result.GetCompositeSchedule(status="Rejected", status_info={"reason_code": UNKNOWN_EVSE})
        if duration <= 0:
            return call_result.GetCompositeSchedule(status="Rejected", status_info={"reason_code": INVALID_VALUE})
        core = self.agent.core
        now = self.agent.now()
        unit = charging_rate_unit or "A"
        if evse_id == 0:
            periods = core.composite_schedule(0, float(duration), unit, now) or []
            if not periods:  # no ChargingStationMaxProfile: the station's total is every EVSE's limit together
                firsts = [core.composite_schedule(cid, float(duration), unit, now) or [] for cid in core.connectors]
                periods = [CompositePeriod(now, sum(f[0].limit for f in firsts if f))]
        else:
            ids = self._evse_connectors(evse_id)
            busy = [cid for cid in ids if core.session(cid) is not None]
            periods = core.composite_schedule((busy or ids)[0], float(duration), unit, now) or []
        start = int(now)
        schedule = {"evse_id": evse_id, "duration": duration, "schedule_start": iso(start),
                    "charging_rate_unit": unit, "charging_schedule_period": schedule_periods(periods, start)}
        return call_result.GetCompositeSchedule(status="Accepted", schedule=schedule)

    # ---- helpers ------------------------------------------------------------------------------------------

    def _evse_connectors(self, evse_id: int) -> list[int]:
        """The agent connectors of EVSE evse_id (> 0); [] for an unknown EVSE."""
        return [cid for cid, (e, _) in sorted(self.evses.items()) if e == evse_id]

    def _prune_stored_profiles(self) -> None:
        """Drop the stored JSON of profiles the core no longer holds (cleared, replaced, ended with their
        transaction), keeping a pending start's TxProfile."""
        core = self.agent.core
        live = {(p.profile_id, p.connector_id) for p in core.profiles}
        live |= {(c.pending_tx_profile.profile_id, cid) for cid, c in core.connectors.items()
                 if c.pending_tx_profile is not None}
        for connector_id, raw in self.agent.store.profiles():
            pid = raw.get("id")
            if isinstance(pid, int) and (pid, connector_id) not in live:
                self.agent.store.profile_delete(pid)
