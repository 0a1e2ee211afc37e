"""Authorization: local list and cache, the back office when online, the offline rules."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agent.clock import iso, parse_iso
from agent.core import events as ev
from agent.core.auth import AuthEntry as CoreAuthEntry
from agent.core.auth import DecisionAction, cache_update, decide_local, decide_without_answer, list_conflict
from agent.errors import CallRefused
from agent.store import AuthEntry as StoreAuthEntry
from drivers.base import mask_id

if TYPE_CHECKING:
    pass

from agent.runtime.clock import ClockMixin

LOGGER = logging.getLogger(__name__)


class AuthorizationMixin(ClockMixin):
    """Deciding an id: local list, cache, back office, offline rules; caching the answers."""

    def _check_list_conflict(self, connector_id: int, id_tag: str, status: ev.AuthStatus) -> None:
        """OCPP 1.6 3.5: a back-office answer that contradicts the local list is reported with the status."""
        if not self.settings.local_auth_list_enabled:
            return
        entry = self._core_entry(self.store.local_list_get(id_tag))
        if not list_conflict(entry, status, self.now()):
            return
        assert entry is not None
        info = f"list {entry.status_at(self.now()).value}, office {status.value}"
        LOGGER.warning("connector %d: id %s: the back office contradicts the local list (%s)", connector_id,
                       id_tag, info)
        snapshot = self.core.snapshot()
        current = snapshot["status"] if connector_id == 0 else snapshot["connectors"][str(connector_id)]["status"]
        if self.link_session is not None:
            self.link_session.status_changed(ev.StatusChanged(
                connector_id, ev.ConnectorStatus(current), ev.Fault(ev.FAULT_LOCAL_LIST_CONFLICT, info=info),
                self.now()))

    @staticmethod
    def _core_entry(entry: StoreAuthEntry | None) -> CoreAuthEntry | None:
        if entry is None or entry.status is None:
            return None
        try:
            status = ev.AuthStatus(entry.status)
        except ValueError:
            status = ev.AuthStatus.INVALID
        return CoreAuthEntry(status, parse_iso(entry.expiry_date), entry.parent_id_tag)

    def remember_authorization(self, auth: ev.AuthResult) -> None:
        """What the back office said of an id goes to the authorization cache (where the rules allow)."""
        in_list = self.settings.local_auth_list_enabled and self.store.local_list_get(auth.id_tag) is not None
        entry = cache_update(auth.status, auth.expiry, auth.parent_id_tag, in_local_list=in_list,
                             cache_enabled=self.settings.auth_cache_enabled)
        if entry is not None:
            expiry = iso(auth.expiry) if auth.expiry is not None else None
            self.store.cache_put(StoreAuthEntry(auth.id_tag, entry.status.value, expiry, entry.parent_id_tag))

    def _auth_entries(self, id_tag: str) -> tuple[CoreAuthEntry | None, CoreAuthEntry | None]:
        """(local list entry, cache entry) of an id, each None when disabled or absent."""
        settings = self.settings
        list_entry = self.store.local_list_get(id_tag) if settings.local_auth_list_enabled else None
        cache_entry = self.store.cache_get(id_tag) if settings.auth_cache_enabled else None
        return self._core_entry(list_entry), self._core_entry(cache_entry)

    def local_decision(self, id_tag: str, online: bool) -> Any:
        """decide_local with the store's list and cache entries."""
        list_entry, cache_entry = self._auth_entries(id_tag)
        return decide_local(id_tag, list_entry, cache_entry, online, self.core.settings, self.now())

    async def _authorize(self, id_tag: str) -> None:
        session = self.link_session
        decision = self.local_decision(id_tag, session is not None)
        if decision.action is not DecisionAction.ASK_BACK_OFFICE:
            LOGGER.info("id %s decided locally: %s (%s)", mask_id(id_tag), decision.status.value, decision.source.value)
            self.feed(decision.as_result(id_tag))
            return
        assert session is not None
        try:
            result = await session.authorize(id_tag)
        except CallRefused as err:
            # online, but no usable answer: not an offline situation, so only the list and the cache decide
            entries = self._auth_entries(id_tag)
            decision = decide_without_answer(*entries, self.now())
            LOGGER.warning("authorization of %s refused by the back office (%s); decided by the local list and "
                           "cache: %s (%s)", id_tag,
                           err, decision.status.value, decision.source.value)
            self.feed(decision.as_result(id_tag))
            return
        except (TimeoutError, ConnectionError, OSError) as err:
            # no answer (timeout, or the socket closed under the call): the offline rules decide
            LOGGER.warning("authorization of %s got no answer (%s); deciding offline", mask_id(id_tag),
                           type(err).__name__)
            offline = self.local_decision(id_tag, False)
            LOGGER.info("id %s decided locally: %s (%s)", mask_id(id_tag), offline.status.value, offline.source.value)
            self.feed(offline.as_result(id_tag))
            return
        self.feed(result)

    def authorization_answered(self, auth: ev.AuthResult) -> ev.AuthResult:
        """The back office answered an authorization: check it against the local list, cache it, pass it on."""
        self._check_list_conflict(0, auth.id_tag, auth.status)
        self.remember_authorization(auth)
        return auth
