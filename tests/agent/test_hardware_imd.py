"""The IMD as the cable check (cable_check = "imd"): its measurement passes only with a vehicle plugged in, so a
contactor never closes on a check of an open cable (agent/hardware.py `_read_imd`)."""

from __future__ import annotations

import pytest

from agent.hardware import ConnectorDevices, ConnectorObservation, Hardware
from drivers.base import ImdState, ImdThresholds, InsulationReading


class Imd:
    """An IMD that answers with one state."""

    name = "imd1"

    def __init__(self, state: ImdState) -> None:
        self.state = state

    async def read(self) -> InsulationReading:
        return InsulationReading(self.state, 2_000_000.0, 400.0, ImdThresholds(500_000.0, 100_000.0))


@pytest.mark.parametrize("state, plugged, passes", [
    (ImdState.OK, True, True), (ImdState.WARNING, True, True), (ImdState.OK, False, False),
    (ImdState.OK, None, False), (ImdState.FAULT, True, False), (ImdState.NO_MEASUREMENT, True, False)])
async def test_the_imds_cable_check_needs_a_plugged_vehicle_and_a_passing_state(
        state: ImdState, plugged: bool | None, passes: bool) -> None:
    devices = ConnectorDevices(1, "dc", meter=None, contactor=None, imd=Imd(state),  # type: ignore[arg-type]
                               cable_check="imd")
    hw = Hardware(connectors={1: devices})
    obs = ConnectorObservation(1, None, None, {}, plugged=plugged, isolation_valid=True)  # the controller's: ignored
    await hw._read_imd(devices, obs)
    assert obs.isolation_valid is passes
