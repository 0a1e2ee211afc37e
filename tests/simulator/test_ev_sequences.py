"""The simulated EV plays the CHAdeMO and CCS sequences in order with the version 2 detail, and takes every
vehicle fault."""

from __future__ import annotations

import pytest

from drivers.base import CcsPhase, ChademoFault, ChademoStatus, ChargeProtocol, EvErrorCode
from drivers.dc import registers as reg
from simulator.ev import VEHICLE_FAULTS, EvModel, EvPhase

DT = 0.05


def run(ev: EvModel, seconds: float, power_w: float) -> list[tuple[int, CcsPhase]]:
    """Step the EV; the (CHAdeMO step, CCS phase) it went through, each change once."""
    seen: list[tuple[int, CcsPhase]] = []
    for _ in range(round(seconds / DT)):
        ev.step(DT, power_w if ev.ready else 0.0)
        now = (ev.chademo_step, ev.ccs_phase)
        if not seen or seen[-1] != now:
            seen.append(now)
    return seen


def session(protocol: ChargeProtocol) -> tuple[EvModel, list[tuple[int, CcsPhase]]]:
    """Plug, handshake, charge to full, ramp down and end: the whole sequence."""
    ev = EvModel(kind="dc", protocol=protocol, battery_kwh=1.0, soc_pct=95.0, handshake_s=1.0)
    ev.plug()
    seen = [(ev.chademo_step, ev.ccs_phase)]
    seen += run(ev, 1.2, 0.0)  # the handshake; no power before the EV is ready
    seen += run(ev, 60.0, 50_000.0)  # charges until full, then asks for nothing
    seen += run(ev, 1.0, 0.0)
    return ev, [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]


def test_ccs_phases_in_order() -> None:
    ev, seen = session(ChargeProtocol.CCS)
    assert [phase for _, phase in seen] == [
        CcsPhase.SESSION_SETUP, CcsPhase.CHARGE_PARAMETER_DISCOVERY, CcsPhase.CABLE_CHECK, CcsPhase.PRE_CHARGE,
        CcsPhase.POWER_DELIVERY, CcsPhase.CURRENT_DEMAND, CcsPhase.POWER_DELIVERY_STOP,
        CcsPhase.WELDING_DETECTION, CcsPhase.SESSION_STOP,
    ]
    assert all(step == 0 for step, _ in seen)
    detail = ev.detail()
    assert (detail.full_soc_pct, detail.bulk_soc_pct, detail.ev_max_power_w) == (100.0, 80.0, 150_000.0)
    assert detail.ev_error_code is EvErrorCode.NO_ERROR and detail.chademo_protocol is None


def test_chademo_steps_in_order_with_the_vehicle_flags() -> None:
    ev = EvModel(kind="dc", protocol=ChargeProtocol.CHADEMO, battery_kwh=1.0, soc_pct=95.0, handshake_s=1.0)
    assert ev.detail().chademo_protocol is None  # unplugged: nothing to say
    ev.plug()
    flags = [ev.detail().chademo_status]
    steps = [ev.chademo_step]
    for seconds, power in ((1.2, 0.0), (60.0, 50_000.0), (1.0, 0.0)):
        for _ in range(round(seconds / DT)):
            ev.step(DT, power if ev.ready else 0.0)
            if ev.chademo_step != steps[-1]:
                steps.append(ev.chademo_step)
                flags.append(ev.detail().chademo_status)
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]
    enabled = [bool(f & ChademoStatus.CHARGING_ENABLED) for f in flags]
    assert enabled == [False, True, True, True, True, False, False, False]
    contactor_open = [bool(f & ChademoStatus.EV_CONTACTOR_OPEN) for f in flags]
    assert contactor_open == [True, True, True, False, False, False, True, True]
    assert flags[-1] & ChademoStatus.STOP_REQUEST  # full: a normal stop
    detail = ev.detail()
    assert (detail.chademo_protocol, detail.max_charging_time_s, detail.battery_capacity_kwh) == (2, 5400, 1.0)
    assert detail.estimated_charging_time_s is not None and 0 <= detail.estimated_charging_time_s <= 5400
    assert detail.ccs_phase is CcsPhase.IDLE


@pytest.mark.parametrize("code", VEHICLE_FAULTS)
def test_each_vehicle_fault_ends_the_session_until_unplugged(code: str) -> None:
    protocol = ChargeProtocol.CCS if code.startswith("ccs_") else ChargeProtocol.CHADEMO
    ev = EvModel(kind="dc", protocol=protocol, handshake_s=0.2)
    ev.plug()
    run(ev, 0.3, 0.0)
    run(ev, 0.2, 10_000.0)
    assert ev.ready
    ev.inject_fault(code)
    assert not ev.ready and ev.phase is EvPhase.FAULTED and ev.requested_current_a() == 0.0
    assert [c for c, _ in reg.vehicle_faults(ev.detail())] == [code]
    other = ChargeProtocol.CHADEMO if protocol is ChargeProtocol.CCS else ChargeProtocol.CCS
    with pytest.raises(ValueError, match="unknown vehicle fault"):
        EvModel(kind="dc", protocol=other).inject_fault(code)
    ev.unplug()
    assert reg.vehicle_faults(ev.detail()) == [] and not ev.faults


def test_a_chademo_vehicle_may_report_several_faults() -> None:
    ev = EvModel(kind="dc", protocol=ChargeProtocol.CHADEMO)
    ev.plug()
    ev.inject_fault("chademo_battery_over_voltage")
    ev.inject_fault("chademo_high_battery_temperature")
    assert ev.detail().chademo_faults == ChademoFault.BATTERY_OVER_VOLTAGE | ChademoFault.HIGH_BATTERY_TEMPERATURE
    ev.inject_fault("chademo_battery_over_voltage", on=False)
    assert ev.detail().chademo_faults == ChademoFault.HIGH_BATTERY_TEMPERATURE


def test_an_ac_ev_has_no_vehicle_faults_to_inject() -> None:
    with pytest.raises(ValueError):
        EvModel(kind="ac").inject_fault("ccs_ress_malfunction")
