"""Hardware self-test for technicians: meter and controller communication, the insulation monitor's own
self-test, contactor click with feedback, connector lock, LEDs and the e-stop input. Refused while a session
runs or an EV is plugged in: the contactor is never closed onto a vehicle outside a session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from drivers.base import IndicatorState
from drivers.errors import DriverError

if TYPE_CHECKING:
    from agent.runtime import Agent

LOGGER = logging.getLogger(__name__)

LED_STEP_S = 0.3


class SelftestRefused(ValueError):
    """The self-test cannot run now."""


def _result(ok: bool, detail: str) -> dict[str, Any]:
    return {"ok": ok, "detail": detail}


async def _settle(device: Any) -> None:
    await asyncio.sleep(float(getattr(device, "settle_s", 0.1)) + 0.05)


async def run_selftest(agent: Agent, connector_ids: list[int] | None = None) -> dict[str, Any]:
    """Run every check; returns {connector: {check: {ok, detail}}, "estop": ...}.

    The whole charge point is out of service while it runs (every connector Unavailable, nothing starts),
    so no session can begin on one connector while another one's contactor clicks.
    """
    ids = connector_ids or sorted(agent.connectors)
    for cid in ids:
        if cid not in agent.connectors:
            raise SelftestRefused(f"no connector {cid}")
    for cid in sorted(agent.connectors):
        if agent.core.session(cid) is not None:
            raise SelftestRefused(f"connector {cid} has a running session")
        if agent.connectors[cid].plugged:
            raise SelftestRefused(f"an EV is plugged into connector {cid}")
    for cid in ids:
        if agent.connectors[cid].plugged is None:
            raise SelftestRefused(f"connector {cid}: plug state unknown (its pilot controller has not answered); "
                                  "the contactor is never clicked onto a cable that may hold an EV")
    if agent.core.any_held():
        raise SelftestRefused("a self-test is already running")
    agent.execute(agent.core.hold(True, agent.now()))
    try:
        return await _run_checks(agent, ids)
    finally:
        agent.execute(agent.core.hold(False, agent.now()))


async def _run_checks(agent: Agent, ids: list[int]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for cid in ids:
        devices = agent.hw.connectors[cid]
        checks: dict[str, Any] = {}
        try:
            reading = await devices.meter.read()
            checks["meter"] = _result(True, f"{reading.energy_import_wh:.1f} Wh")
        except DriverError as err:
            checks["meter"] = _result(False, str(err))
        if devices.dc is not None:
            try:
                status = await devices.dc.read()
                detail = f"protocol {status.protocol.name}, EV state {status.ev_state.name}"
                checks["controller"] = _result(True, detail)
            except DriverError as err:
                checks["controller"] = _result(False, str(err))
        imd_result = await agent.hw.imd_self_test(cid)  # recorded: a failed one faults the connector
        if imd_result is not None:
            checks["insulation_monitor"] = _result(imd_result.ok, imd_result.detail)
        contactor = devices.contactor
        if agent.connectors[cid].plugged is not False:
            # plugged in (or unknown) since the test began: never click a contactor onto a vehicle
            checks["contactor"] = _result(False, "skipped: an EV was plugged in during the self-test")
            report[str(cid)] = checks
            continue
        try:
            contactor.close()
            await _settle(contactor)
            contactor.check()
            closed_feedback = contactor.feedback_closed
            contactor.open()
            await _settle(contactor)
            contactor.check()
            checks["contactor"] = _result(True, "closed and opened" + (
                "" if closed_feedback is not None else " (no feedback contact to confirm)"))
        except DriverError as err:
            checks["contactor"] = _result(False, str(err))
        finally:
            contactor.open()
        if devices.lock is not None:
            lock = devices.lock
            try:
                lock.lock()
                await _settle(lock)
                lock.check()
                lock.unlock()
                await _settle(lock)
                lock.check()
                checks["lock"] = _result(True, "locked and unlocked")
            except DriverError as err:
                checks["lock"] = _result(False, str(err))
            finally:
                lock.unlock()
        if devices.indicator is not None:
            indicator = devices.indicator
            before = indicator.state
            for state in (IndicatorState.FAULTED, IndicatorState.AVAILABLE, IndicatorState.CHARGING):
                indicator.show(state)
                await asyncio.sleep(LED_STEP_S)
            indicator.show(before)
            checks["indicator"] = _result(True, "red, green, blue shown (look at the LEDs)")
        report[str(cid)] = checks
    if agent.hw.estop is not None:
        pressed = agent.hw.estop.pressed
        report["estop"] = _result(not pressed, "pressed" if pressed else "released (press it to see it here)")
    LOGGER.info("self-test: %s", report)
    return report
