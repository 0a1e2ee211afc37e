"""The EVSE level above the connector: one transaction per EVSE, an EVSE's status."""

from __future__ import annotations

from agent.core import (
    AuthorizationRejected,
    ChargePointCore,
    ConnectorConfig,
    ConnectorStatus,
    CoreSettings,
    IdPresented,
    PlugChanged,
    RemoteStart,
    RemoteStartResult,
    TransactionStarted,
)
from agent.core.connector import Evse
from tests.agent.test_core_rig import Rig, one, only


def test_each_connector_is_its_own_evse_by_default() -> None:
    core = ChargePointCore(CoreSettings(connectors=(ConnectorConfig(), ConnectorConfig())))
    assert core.evses == {1: Evse(1, (1,)), 2: Evse(2, (2,))}


def test_two_connectors_of_one_evse_run_one_transaction_at_a_time() -> None:
    rig = Rig(connectors=2, config=ConnectorConfig(has_lock=True, evse_id=1))
    assert rig.core.evses == {1: Evse(1, (1, 2))}
    rig.charge(1, "TAG1")
    assert rig.core.evse_status(1) is ConnectorStatus.CHARGING
    rig.send(PlugChanged(2, True))
    out = rig.send(IdPresented(2, "TAG2"))
    assert one(out, AuthorizationRejected).connector_id == 2 and not only(out, TransactionStarted)
    answer, _ = rig.call("remote_start", RemoteStart(2, "TAG2"))
    assert answer is RemoteStartResult.REJECTED
    rig.send(IdPresented(1, "TAG1"))  # the first session ends ...
    assert rig.core.evse_status(1) is ConnectorStatus.FINISHING
    rig.authorize("TAG2", 2)  # ... and the other connector may start
    assert one(rig.log[-20:], TransactionStarted).connector_id == 2


def test_separate_evses_charge_at_once() -> None:
    rig = Rig(connectors=2)
    rig.charge(1, "TAG1")
    rig.charge(2, "TAG2")
    assert [s.connector_id for s in only(rig.log, TransactionStarted)] == [1, 2]
    assert rig.core.evse_status(2) is ConnectorStatus.CHARGING and rig.core.evse_status(3) is None
