"""The token type a reader (or the [card_id] config) gives a card travels through the core's authorization
event into the 2.0.1 TransactionEvent's idToken."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core import AuthResult, AuthStatus, IdPresented, PlugChanged
from agent.core import events as ev
from agent.core.events import StopReason
from agent.ports import TxStopped
from tests.agent.test_core_rig import Rig
from tests.agent.test_v201_journal import STAMP, T0, events, journal, start


@pytest.mark.parametrize(("connector", "token_type"), [(1, "ISO15693"), (None, "Local"), (1, None)])
def test_the_core_hands_the_presented_type_to_authorized(connector: int | None, token_type: str | None) -> None:
    rig = Rig()
    rig.send(PlugChanged(1, True))
    rig.send(IdPresented(connector, "A1B2C3D4", token_type=token_type))
    out = rig.send(AuthResult("A1B2C3D4", AuthStatus.ACCEPTED))
    authorized = [o for o in out if isinstance(o, ev.Authorized)]
    assert len(authorized) == 1 and authorized[0].token_type == token_type


@pytest.mark.parametrize(("source", "token_type", "expected"), [
    (ev.AuthSource.CARD, "ISO15693", "ISO15693"),
    (ev.AuthSource.CARD, "Local", "Local"),
    (ev.AuthSource.CARD, None, "ISO14443"),  # a card without a type: the journal's default
    (ev.AuthSource.REMOTE, "ISO15693", "Central"),  # a remote start is never a card's type
])
def test_the_v201_journal_sends_the_type_of_the_authorization(tmp_path: Path, source: ev.AuthSource,
                                                             token_type: str | None, expected: str) -> None:
    j, store = journal(tmp_path)
    j.session_event(ev.EvConnected(1, T0 - 5), STAMP)
    j.session_event(ev.Authorized(1, "CARD", source, T0, token_type), STAMP)
    tx = start(j, store)
    j.stopped(TxStopped(tx, 1, 2000.0, T0 + 60, StopReason.LOCAL, "CARD"), STAMP)
    started, ended = events(store)[0], events(store)[-1]  # both valid against the official schema
    assert started["idToken"] == {"idToken": "CARD", "type": expected}
    if source is ev.AuthSource.CARD:
        assert ended["idToken"] == {"idToken": "CARD", "type": expected}  # the same card stops it
