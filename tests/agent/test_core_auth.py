"""Authorization decisions (agent.core.auth): local list, cache, online, offline rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agent.core import (
    AuthEntry,
    AuthResult,
    AuthStatus,
    DecisionAction,
    DecisionSource,
    cache_update,
    decide_local,
    list_conflict,
)
from agent.core.auth import decide_without_answer

NOW = 1_700_000_000.0
VALID = AuthEntry(AuthStatus.ACCEPTED, NOW + 3600, "PARENT")
EXPIRED = AuthEntry(AuthStatus.ACCEPTED, NOW - 1)
BLOCKED = AuthEntry(AuthStatus.BLOCKED)


@dataclass
class Settings:
    local_pre_authorize: bool = False
    local_authorize_offline: bool = True
    allow_offline_tx_for_unknown_id: bool = False


def decide(list_entry: AuthEntry | None, cache_entry: AuthEntry | None, online: bool,
           **settings: bool) -> tuple[DecisionAction, AuthStatus, DecisionSource]:
    d = decide_local("TAG", list_entry, cache_entry, online, Settings(**settings), NOW)
    return d.action, d.status, d.source


def test_tc_008_local_list_id_offline_starts() -> None:
    assert decide(VALID, None, online=False) == (DecisionAction.ACCEPT, AuthStatus.ACCEPTED,
                                                 DecisionSource.LOCAL_LIST)


def test_tc_007_cached_id_offline_starts() -> None:
    assert decide(None, VALID, online=False) == (DecisionAction.ACCEPT, AuthStatus.ACCEPTED,
                                                 DecisionSource.CACHE)


def test_accepted_decision_carries_parent_and_expiry() -> None:
    d = decide_local("TAG", VALID, None, False, Settings(), NOW)
    assert d.as_result("TAG") == AuthResult("TAG", AuthStatus.ACCEPTED, "PARENT", NOW + 3600)


@pytest.mark.parametrize(("entry", "status"), [(BLOCKED, AuthStatus.BLOCKED), (EXPIRED, AuthStatus.EXPIRED),
                                               (AuthEntry(AuthStatus.INVALID), AuthStatus.INVALID)])
def test_id_refused_by_local_list_is_refused_offline_even_with_unknown_ids_allowed(
    entry: AuthEntry, status: AuthStatus
) -> None:
    result = decide(entry, VALID, online=False, allow_offline_tx_for_unknown_id=True)
    assert result == (DecisionAction.REJECT, status, DecisionSource.LOCAL_LIST)


def test_cache_never_overrides_the_local_list() -> None:
    assert decide(BLOCKED, VALID, online=False)[0] is DecisionAction.REJECT


@pytest.mark.parametrize(("cache", "status"), [(EXPIRED, AuthStatus.EXPIRED), (BLOCKED, AuthStatus.BLOCKED),
                                               (AuthEntry(AuthStatus.INVALID), AuthStatus.INVALID)])
def test_blocked_expired_or_invalid_cache_entry_is_refused_offline_even_with_unknown_ids_allowed(
    cache: AuthEntry, status: AuthStatus
) -> None:
    # known to the cache is not unknown: AllowOfflineTxForUnknownId does not apply (OCPP 1.6 3.5.1)
    assert decide(None, cache, online=False) == (DecisionAction.REJECT, status, DecisionSource.CACHE)
    assert decide(None, cache, online=False, allow_offline_tx_for_unknown_id=True) == (
        DecisionAction.REJECT, status, DecisionSource.CACHE)
    assert decide(None, cache, online=True)[0] is DecisionAction.ASK_BACK_OFFICE


@pytest.mark.parametrize(("list_entry", "cache", "expected"), [
    (None, None, (DecisionAction.REJECT, AuthStatus.INVALID)),
    (VALID, None, (DecisionAction.ACCEPT, AuthStatus.ACCEPTED)),
    (None, VALID, (DecisionAction.ACCEPT, AuthStatus.ACCEPTED)),
    (None, BLOCKED, (DecisionAction.REJECT, AuthStatus.BLOCKED)),
    (BLOCKED, VALID, (DecisionAction.REJECT, AuthStatus.BLOCKED)),
])
def test_authorize_answered_with_a_callerror_is_decided_by_list_and_cache_only(
    list_entry: AuthEntry | None, cache: AuthEntry | None, expected: tuple[DecisionAction, AuthStatus]
) -> None:
    d = decide_without_answer(list_entry, cache, NOW)
    assert (d.action, d.status) == expected


def test_tc_037_1_offline_unknown_id_with_allow_offline_tx_for_unknown_id() -> None:
    assert decide(None, None, online=False, allow_offline_tx_for_unknown_id=True) == (
        DecisionAction.ACCEPT, AuthStatus.ACCEPTED, DecisionSource.OFFLINE_UNKNOWN)
    assert decide(None, None, online=False)[:2] == (DecisionAction.REJECT, AuthStatus.INVALID)


def test_local_authorize_offline_false_refuses_known_ids_offline() -> None:
    assert decide(VALID, None, online=False, local_authorize_offline=False)[0] is DecisionAction.REJECT
    assert decide(None, VALID, online=False, local_authorize_offline=False)[0] is DecisionAction.REJECT


@pytest.mark.parametrize(("pre", "expected"), [(True, DecisionAction.ACCEPT),
                                               (False, DecisionAction.ASK_BACK_OFFICE)])
def test_local_pre_authorize_online(pre: bool, expected: DecisionAction) -> None:
    assert decide(VALID, None, online=True, local_pre_authorize=pre)[0] is expected
    assert decide(None, VALID, online=True, local_pre_authorize=pre)[0] is expected


def test_online_unknown_or_locally_invalid_ids_go_to_the_back_office() -> None:
    assert decide(None, None, online=True, local_pre_authorize=True)[0] is DecisionAction.ASK_BACK_OFFICE
    assert decide(BLOCKED, None, online=True, local_pre_authorize=True)[0] is DecisionAction.ASK_BACK_OFFICE


def test_cache_update_rules() -> None:
    stored = cache_update(AuthStatus.BLOCKED, None, None, in_local_list=False, cache_enabled=True)
    assert stored == AuthEntry(AuthStatus.BLOCKED)
    stored = cache_update(AuthStatus.ACCEPTED, NOW + 5, "P", in_local_list=False, cache_enabled=True)
    assert stored == AuthEntry(AuthStatus.ACCEPTED, NOW + 5, "P")
    assert cache_update(AuthStatus.ACCEPTED, None, None, in_local_list=True, cache_enabled=True) is None
    assert cache_update(AuthStatus.ACCEPTED, None, None, in_local_list=False, cache_enabled=False) is None


def test_list_conflict() -> None:
    assert list_conflict(VALID, AuthStatus.BLOCKED, NOW)
    assert list_conflict(BLOCKED, AuthStatus.ACCEPTED, NOW)
    assert not list_conflict(VALID, AuthStatus.ACCEPTED, NOW)
    assert not list_conflict(None, AuthStatus.BLOCKED, NOW)


def test_entry_status_at_reports_expiry() -> None:
    assert EXPIRED.status_at(NOW) is AuthStatus.EXPIRED
    assert VALID.status_at(NOW) is AuthStatus.ACCEPTED
    assert not VALID.valid_at(NOW + 3600)
