"""Contactors, limits and locks per connector, in order, never dying; the ramp-down before opening on DC."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from agent.config import ConnectorConfig
from agent.core import events as ev
from drivers.errors import DriverError

if TYPE_CHECKING:
    pass

from agent.runtime.base import (
    OPEN_RAMP_TIMEOUT_S,
    OPEN_SAFE_CURRENT_A,
    ORDER_WAIT_S,
    RAMP_POLL_S,
    RAMP_WAIT_MAX_S,
    STOP_HOLD_TIMEOUT_S,
    _Barrier,
    _Queued,
)
from agent.runtime.clock import ClockMixin

LOGGER = logging.getLogger(__name__)


class ActuatorsMixin(ClockMixin):
    """The actuator loop of each connector, the DC ramp-down, unlocking."""

    async def actuator_loop(self, connector_id: int) -> None:
        """Executes contactor and limit commands of one connector in order; never dies."""
        state = self.connectors[connector_id]
        while True:
            item = await state.actuator.get()
            if isinstance(item, _Barrier):
                if not item.done.done():
                    item.done.set_result(None)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(item.release), STOP_HOLD_TIMEOUT_S)
                continue
            try:
                await self._actuate(connector_id, item)
            except Exception:  # never dies: it is the only way to open on DC
                LOGGER.exception("connector %d: actuator step failed", connector_id)
            finally:
                if item.done is not None and not item.done.done():
                    item.done.set_result(None)

    async def _actuate(self, connector_id: int, item: _Queued) -> None:
        """Carry out one contactor or limit command; a failure is logged, never raised."""
        state = self.connectors[connector_id]
        devices = self.hw.connectors[connector_id]
        cfg = self.config.connector(connector_id)
        op = item.op
        if item.after:
            _, late = await asyncio.wait(item.after, timeout=ORDER_WAIT_S)
            if late:
                LOGGER.warning("connector %d closes although %d other limit(s) of the same decision are not "
                               "applied after %.0f s", connector_id, len(late), ORDER_WAIT_S)
        wanted = self.core.connectors[connector_id].contactor_closed
        if isinstance(op, ev.SetContactor) and op.closed and not wanted:
            return  # superseded: the core decided to open since (a fault, an unplug in the same poll)
        try:
            if isinstance(op, ev.SetLimit):
                if devices.dc is not None:
                    await devices.dc.set_limits(op.current_a, self._power_limit_w(op, cfg))
            elif op.closed:
                devices.contactor.close()
                if devices.dc is not None:
                    await devices.dc.allow_charging(True)
            else:
                await self._ramp_down(connector_id, devices)  # never raises; bounded
                devices.contactor.open()
        except Exception as err:  # the loop must outlive any error: it is the only way to open on DC
            LOGGER.error("connector %d: %r failed: %s", connector_id, op, err)
            if not getattr(op, "closed", True):
                with contextlib.suppress(Exception):
                    devices.contactor.open()  # whatever the controller said, the power path opens
            return
        if isinstance(op, ev.SetContactor) and not op.closed:
            session = self.core.session(connector_id)
            if session is not None and state.reading is not None:
                try:  # the transaction row follows every contactor opening (power-loss fallback)
                    self.store.update_transaction_meter(session.local_tx_id, state.reading.energy_import_wh,
                                                        self.now())
                except Exception as err:
                    LOGGER.error("transaction %d meter not persisted: %s", session.local_tx_id, err)

    @staticmethod
    def _power_limit_w(op: ev.SetLimit, cfg: ConnectorConfig) -> float:
        """The controller's power register: the core's W on DC (no limit: the controller's own rating);
        on AC the pilot board's, the offered current on every real phase at nominal voltage."""
        if cfg.kind == "dc":
            return op.power_w if op.power_w is not None else math.inf
        return op.current_a * cfg.voltage_v * cfg.phases

    async def power_down(self, timeout_s: float = OPEN_RAMP_TIMEOUT_S) -> None:
        """Before the process exits: ramp every DC controller down, then open every contactor."""
        for connector_id, devices in self.hw.connectors.items():
            with contextlib.suppress(Exception):
                await self._ramp_down(connector_id, devices, timeout_s)
            with contextlib.suppress(Exception):
                devices.contactor.open()

    async def _ramp_down(self, connector_id: int, devices: Any, timeout_s: float = OPEN_RAMP_TIMEOUT_S) -> str:
        """DC, before the contactor opens: the controller stops and the current falls, waited for within a bound;
        never raises. Returns how it ended ("no_dc", "down", "timeout", "unreachable") for the log and tests.

        A controller that does not take the stop command, or whose current cannot be read, stops by itself once
        our heartbeats stop reaching it (its watchdog, docs/dc-controller.md): then the wait is that watchdog's
        timeout, so the contactor breaks no current the controller could still be driving."""
        dc = devices.dc
        if dc is None:
            return "no_dc"
        commanded = True
        try:
            await asyncio.wait_for(dc.allow_charging(False), timeout_s)
        except Exception as err:  # a silent bus, a refused write: the watchdog bound applies
            commanded = False
            LOGGER.error("connector %d: stop command not delivered (%s); waiting for the controller's watchdog",
                         connector_id, err)
        # not commanded: the controller's watchdog trips after its heartbeat timeout, then ramps down like on a
        # commanded stop
        watchdog_s = float(getattr(dc, "heartbeat_timeout_s", OPEN_RAMP_TIMEOUT_S)) + timeout_s
        bound_s = timeout_s if commanded else min(watchdog_s, RAMP_WAIT_MAX_S)
        deadline = time.monotonic() + bound_s
        answered = False
        while time.monotonic() < deadline:
            try:
                status = await asyncio.wait_for(dc.read(), max(0.05, deadline - time.monotonic()))
            except (DriverError, TimeoutError):
                # unknown current: keep asking until the bound (a blip must not open the contactor under load)
                await asyncio.sleep(RAMP_POLL_S)
                continue
            answered = True
            if status.present_a <= OPEN_SAFE_CURRENT_A:
                return "down"
            if not commanded and not status.charging_allowed:
                commanded = True  # the command got through after all (the driver re-applies its setpoints)
            await asyncio.sleep(RAMP_POLL_S)
        if not answered:
            LOGGER.error("connector %d: controller silent for %.1f s; opening the contactor (its watchdog has "
                         "stopped the current by now)", connector_id, bound_s)
            return "unreachable"
        LOGGER.warning("connector %d: current still flowing after %.1f s; opening the contactor anyway",
                       connector_id, bound_s)
        return "timeout"

    async def unlock(self, connector_id: int) -> ev.UnlockResult:
        """UnlockConnector: the core decides (a running transaction stops first), the lock's feedback confirms."""
        result, outs = self.core.unlock(ev.UnlockRequested(connector_id), self.now(), time.monotonic())
        self.execute(outs)
        if result is ev.UnlockResult.UNLOCKED and not await self.hw.lock_released(connector_id):
            return ev.UnlockResult.UNLOCK_FAILED
        return result
