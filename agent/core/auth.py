"""Authorization decisions, pure: the adapter passes the local-list and cache entries it looked up.

Order (DESIGN section 3): the local list first (the cache never overrides it), then the authorization
cache, then the back office when online; offline, LocalAuthorizeOffline lets list/cache-valid ids start and
AllowOfflineTxForUnknownId lets unknown ids start (an id in neither the list nor the cache). An id that the
list or the cache marks invalid, blocked or expired is refused offline; online the back office decides.
LocalPreAuthorize: online, a locally valid id starts at once without waiting for Authorize.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Protocol

from agent.core.events import AuthResult, AuthStatus

LOGGER = logging.getLogger(__name__)


class AuthSettings(Protocol):
    """The configuration values the decision needs (CoreSettings has them)."""

    @property
    def local_pre_authorize(self) -> bool: ...

    @property
    def local_authorize_offline(self) -> bool: ...

    @property
    def allow_offline_tx_for_unknown_id(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """An idTagInfo as stored in the local list or the cache."""

    status: AuthStatus
    expiry: float | None = None
    parent_id_tag: str | None = None

    def valid_at(self, now: float) -> bool:
        """Accepted and not expired at now."""
        return self.status is AuthStatus.ACCEPTED and (self.expiry is None or now < self.expiry)

    def status_at(self, now: float) -> AuthStatus:
        """The status at now: an Accepted entry past its expiry reads Expired."""
        if self.status is AuthStatus.ACCEPTED and self.expiry is not None and now >= self.expiry:
            return AuthStatus.EXPIRED
        return self.status


class DecisionAction(enum.Enum):
    """What the adapter does with a presented id."""

    ACCEPT = "accept"  # feed AuthResult(Accepted) now
    REJECT = "reject"  # feed AuthResult(status) now
    ASK_BACK_OFFICE = "ask"  # send Authorize, feed its answer


class DecisionSource(enum.Enum):
    """Where the decision came from (for logs and evsectl)."""

    LOCAL_LIST = "local_list"
    CACHE = "cache"
    BACK_OFFICE = "back_office"
    OFFLINE_UNKNOWN = "offline_unknown"
    OFFLINE_NOT_ALLOWED = "offline_not_allowed"


@dataclass(frozen=True, slots=True)
class LocalDecision:
    """The outcome of decide_local."""

    action: DecisionAction
    status: AuthStatus
    source: DecisionSource
    parent_id_tag: str | None = None
    expiry: float | None = None

    def as_result(self, id_tag: str) -> AuthResult:
        """The AuthResult to feed the core (only for ACCEPT/REJECT)."""
        return AuthResult(id_tag, self.status, self.parent_id_tag, self.expiry)


def decide_local(
    id_tag: str,
    list_entry: AuthEntry | None,
    cache_entry: AuthEntry | None,
    online: bool,
    settings: AuthSettings,
    now: float,
) -> LocalDecision:
    """Decide what to do with id_tag before (or instead of) asking the back office.

    Pass list_entry None when the local list is disabled or lacks the id, cache_entry None when the
    cache is disabled or lacks it.
    """
    known: AuthEntry | None = None
    source = DecisionSource.LOCAL_LIST
    if list_entry is not None:
        known = list_entry
    elif cache_entry is not None:
        # a Blocked, Expired or Invalid cache entry is known, not unknown: AllowOfflineTxForUnknownId never
        # lets it start offline
        known, source = cache_entry, DecisionSource.CACHE
    if known is not None and known.valid_at(now):
        accept = settings.local_pre_authorize if online else settings.local_authorize_offline
        if accept:
            return LocalDecision(DecisionAction.ACCEPT, AuthStatus.ACCEPTED, source, known.parent_id_tag,
                                 known.expiry)
        if online:
            return _ask()
        return LocalDecision(DecisionAction.REJECT, AuthStatus.INVALID, DecisionSource.OFFLINE_NOT_ALLOWED,
                             known.parent_id_tag)
    if known is not None:
        # Known but not valid now (list or cache): online the back office decides, offline it is refused.
        if online:
            return _ask()
        return LocalDecision(DecisionAction.REJECT, known.status_at(now), source, known.parent_id_tag,
                             known.expiry)
    if online:
        return _ask()
    if settings.allow_offline_tx_for_unknown_id:
        return LocalDecision(DecisionAction.ACCEPT, AuthStatus.ACCEPTED, DecisionSource.OFFLINE_UNKNOWN)
    return LocalDecision(DecisionAction.REJECT, AuthStatus.INVALID, DecisionSource.OFFLINE_NOT_ALLOWED)


def decide_without_answer(
    list_entry: AuthEntry | None, cache_entry: AuthEntry | None, now: float
) -> LocalDecision:
    """Online, but Authorize was answered with a CALLERROR: not an offline situation, so the local list and
    the cache decide alone (a valid entry starts, anything else is refused; never AllowOfflineTxForUnknownId)."""
    for entry, source in ((list_entry, DecisionSource.LOCAL_LIST), (cache_entry, DecisionSource.CACHE)):
        if entry is None:
            continue
        if entry.valid_at(now):
            return LocalDecision(DecisionAction.ACCEPT, AuthStatus.ACCEPTED, source, entry.parent_id_tag,
                                 entry.expiry)
        return LocalDecision(DecisionAction.REJECT, entry.status_at(now), source, entry.parent_id_tag, entry.expiry)
    return LocalDecision(DecisionAction.REJECT, AuthStatus.INVALID, DecisionSource.BACK_OFFICE)


def _ask() -> LocalDecision:
    return LocalDecision(DecisionAction.ASK_BACK_OFFICE, AuthStatus.INVALID, DecisionSource.BACK_OFFICE)


def cache_update(
    status: AuthStatus,
    expiry: float | None,
    parent_id_tag: str | None,
    *,
    in_local_list: bool,
    cache_enabled: bool,
) -> AuthEntry | None:
    """What to store in the cache from an Authorize / StartTransaction / StopTransaction idTagInfo.

    None = store nothing: the cache is disabled, or the id is in the local list (the list is the
    authority and the cache must never shadow it). Every status is stored, so a card that the back
    office blocked is no longer valid from the cache.
    """
    if not cache_enabled or in_local_list:
        return None
    return AuthEntry(status, expiry, parent_id_tag)


def list_conflict(list_entry: AuthEntry | None, back_office_status: AuthStatus, now: float) -> bool:
    """True when the back office contradicts a valid local-list entry (report LocalListConflict)."""
    if list_entry is None:
        return False
    return list_entry.valid_at(now) != (back_office_status is AuthStatus.ACCEPTED)
