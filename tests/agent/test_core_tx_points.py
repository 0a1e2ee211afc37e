"""Transaction start and stop points (2.0.1's TxStartPoint/TxStopPoint) in ChargePointCore; 1.6 fixes them."""

from __future__ import annotations

from agent.core import (
    ConnectorStatus,
    EvReadyChanged,
    MeterSample,
    PlugChanged,
    SetContactor,
    StopReason,
    TransactionStarted,
    TransactionStopped,
)
from tests.agent.test_core_rig import START, Rig, one, only


def plug_then_card(rig: Rig) -> TransactionStarted:
    """Plug at START (register 1000 Wh), the card 30 s later (register 1000.4 Wh: the meter's own draw)."""
    rig.send(PlugChanged(1, True))
    rig.advance(30)
    rig.send(MeterSample(1, 1000.4, 0.0))
    rig.authorize("TAG1")
    return one(rig.log, TransactionStarted)


def card_then_plug(rig: Rig) -> TransactionStarted:
    """The card at START (register 1000 Wh), the plug 30 s later (register 1000.4 Wh)."""
    rig.authorize("TAG1")
    rig.advance(30)
    rig.send(MeterSample(1, 1000.4, 0.0))
    rig.send(PlugChanged(1, True))
    return one(rig.log, TransactionStarted)


def test_power_path_closed_is_the_1_6_rule_authorized_and_plugged() -> None:
    """The default (1.6's): the start is the moment both are true, whichever came first."""
    for order in (plug_then_card, card_then_plug):
        rig = Rig()
        assert rig.core.settings.tx_start_point == ("PowerPathClosed",)
        started = order(rig)
        assert (started.timestamp, started.meter_start_wh) == (START + 30, 1000.4)
        session = rig.core.session(1)
        assert session is not None and (session.start_wall, session.meter_start_wh) == (START + 30, 1000.4)


def test_ev_connected_dates_the_start_from_the_plug() -> None:
    rig = Rig(tx_start_point=("EVConnected",))
    started = plug_then_card(rig)
    assert (started.timestamp, started.meter_start_wh) == (START, 1000.0)
    rig = Rig(tx_start_point=("EVConnected",))
    started = card_then_plug(rig)  # the plug is the later one: the start is then
    assert (started.timestamp, started.meter_start_wh) == (START + 30, 1000.4)


def test_authorized_dates_the_start_from_the_authorization() -> None:
    rig = Rig(tx_start_point=("Authorized",))
    started = card_then_plug(rig)
    assert (started.timestamp, started.meter_start_wh) == (START, 1000.0)


def test_the_first_point_reached_starts_it() -> None:
    rig = Rig(tx_start_point=("Authorized", "EVConnected"))
    assert plug_then_card(rig).timestamp == START
    rig = Rig(tx_start_point=("Authorized", "EVConnected"))
    assert card_then_plug(rig).timestamp == START


def test_energy_transfer_waits_for_the_power_path_to_close() -> None:
    rig = Rig(tx_start_point=("EnergyTransfer",))
    rig.send(PlugChanged(1, True))
    rig.advance(30)
    rig.send(MeterSample(1, 1000.4, 0.0))
    rig.authorize("TAG1")
    assert not only(rig.log, TransactionStarted) and rig.status() is ConnectorStatus.PREPARING
    rig.advance(10)
    out = rig.send(EvReadyChanged(1, True))
    started = one(out, TransactionStarted)
    assert (started.timestamp, started.meter_start_wh) == (START + 40, 1000.4)
    assert out.index(started) < out.index(SetContactor(1, True))


def test_unknown_or_unseen_points_fall_back_to_the_1_6_rule() -> None:
    rig = Rig(tx_start_point=("ParkingBayOccupancy", "DataSigned"))
    assert plug_then_card(rig).timestamp == START + 30


def test_authorized_as_the_only_stop_point_keeps_the_transaction_over_an_unplug() -> None:
    rig = Rig(tx_stop_point=("Authorized",))
    rig.charge()
    out = rig.send(PlugChanged(1, False))
    assert SetContactor(1, False) in out and not only(out, TransactionStopped)
    assert rig.status() is ConnectorStatus.SUSPENDED_EV


def test_ev_connected_as_a_stop_point_ends_it_at_the_unplug() -> None:
    for points in (("EVConnected",), ("PowerPathClosed",)):
        rig = Rig(tx_stop_point=points)
        rig.charge()
        assert one(rig.send(PlugChanged(1, False)), TransactionStopped).reason is StopReason.EV_DISCONNECTED
