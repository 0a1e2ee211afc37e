"""A plug-in or unplug through the control API reaches the DC controller's registers at once, as a real plug does,
not at the next physics step (100 ms later): the event-to-wire figure measured the step (docs/bench.md)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from drivers.base import PlugState
from simulator.hardware import SimHardware, load_sim_config
from tests.simulator.test_sim_dc_vehicle import write_config


async def test_plug_and_unplug_reach_the_controller_without_a_physics_step(tmp_path: Path) -> None:
    hw = SimHardware(load_sim_config(write_config(tmp_path, "ccs", None)))
    await hw.start()
    try:
        assert hw._task is not None
        hw._task.cancel()  # no physics step from here on: only the control API's own doing counts
        with contextlib.suppress(asyncio.CancelledError):
            await hw._task
        dc = hw.connectors[1].dc
        assert dc is not None and dc.plug is PlugState.UNPLUGGED
        await hw._h_plug({"connector": 1}, {})
        assert dc.plug is PlugState.PLUGGED
        await hw._h_unplug({"connector": 1}, {})
        assert dc.plug is PlugState.UNPLUGGED
    finally:
        await hw.stop()
