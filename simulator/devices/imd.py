"""A simulated Bender ISOMETER isoCHA425HV serving its Modbus map (drivers/imd/isocha_registers.py).

The simulator sets the insulation resistance (a healthy cable, or one falling to the warning or fault
level); the device compares it with the R1/R2 values the host wrote, as the real one does, and shows the
alarm in the channel's flags. A self-test started over Modbus runs for `self_test_s` and ends clean or with
a device error (`fail_self_test`). `device_error` shows the device's own fault on every read.
"""

from __future__ import annotations

import logging

from drivers.imd import isocha_registers as reg
from simulator.devices.modbus_server import RegisterBank

LOGGER = logging.getLogger(__name__)

HEALTHY_OHM = 20e6  # a dry cable and a healthy EV: tens of megaohms
MEASURING_RANGE_OHM = 50e6  # above this the device shows the range end, flagged "true value is bigger"
FIRMWARE_VERSION = 510  # 5.10: supports the faster cable-check self-test


class SimIsoCha:
    """One isoCHA425HV on a simulated Modbus line."""

    def __init__(self, device_id: int = 3, self_test_s: float = 0.5) -> None:
        self.device_id = device_id
        self.self_test_s = self_test_s
        self.resistance_ohm = HEALTHY_OHM
        self.voltage_v = 0.0
        self.device_error = False
        self.fail_self_test = False
        self._test_until: float | None = None
        self._test_failed = False  # the last self-test failed: the device shows an error until the next one
        self.self_tests = 0
        self.bank = RegisterBank()
        self.bank.on_write = self._on_write
        self.bank.set_holding(reg.DEVICE_NAME, reg.encode_name("isoCHA425HV"))
        self.bank.set_holding(reg.FIRMWARE, [425, FIRMWARE_VERSION, 2024, 5, 17, 100])
        for address, value in ((reg.VOLTAGE_TO_EARTH_ALARM, 0), (reg.R1_PREALARM_KOHM, 600),
                               (reg.R2_ALARM_KOHM, 590), (reg.UNDERVOLTAGE_ALARM, 0),
                               (reg.OVERVOLTAGE_ALARM, 0), (reg.AUTO_SELF_TEST, 0), (reg.CHADEMO_MODE, 0),
                               (reg.SELF_TEST_AT_START, 1), (reg.DEVICE_ENABLE, 1),
                               (reg.SELF_TEST_COMMAND, 0)):
            self.bank.set_holding(address, [value])
        self.step(0.0)

    @property
    def enabled(self) -> bool:
        """The host's enable register."""
        return self.bank.holding[reg.DEVICE_ENABLE] == 1

    @property
    def warning_ohm(self) -> float:
        """R1 as the host wrote it."""
        return self.bank.holding[reg.R1_PREALARM_KOHM] * 1000.0

    @property
    def fault_ohm(self) -> float:
        """R2 as the host wrote it."""
        return self.bank.holding[reg.R2_ALARM_KOHM] * 1000.0

    def _on_write(self, address: int, values: list[int]) -> None:
        if address == reg.SELF_TEST_COMMAND and values[0] == reg.SELF_TEST_START:
            self._test_until = -1.0  # started at the next step (which knows the clock)
            self.self_tests += 1
            LOGGER.info("IMD %d: self-test started", self.device_id)

    def step(self, now: float) -> None:
        """Advance the self-test and refresh the channel registers."""
        test = reg.TestType.NONE
        if self._test_until is not None:
            if self._test_until < 0:
                self._test_until = now + self.self_test_s
            if now < self._test_until:
                test = reg.TestType.EXTERNAL
            else:
                self._test_until = None
                self._test_failed = self.fail_self_test
        error = self.device_error or self._test_failed
        if test is not reg.TestType.NONE:
            rf = reg.encode_channel(0.0, reg.Alarm.NONE, test, reg.Unit.OHM, reg.Validity.INVALID,
                                    reg.DESCRIPTION_INSULATION)
        elif error:
            rf = reg.encode_channel(0.0, reg.Alarm.DEVICE_ERROR, reg.TestType.NONE, reg.Unit.OHM,
                                    reg.Validity.INVALID, reg.DESCRIPTION_INSULATION)
        elif not self.enabled:
            rf = reg.encode_channel(0.0, reg.Alarm.NONE, reg.TestType.NONE, reg.Unit.OHM, reg.Validity.INVALID,
                                    reg.DESCRIPTION_INSULATION)
        else:
            r = self.resistance_ohm
            alarm = (reg.Alarm.ALARM if r < self.fault_ohm else reg.Alarm.PRE_WARNING if r < self.warning_ohm
                     else reg.Alarm.NONE)
            validity = reg.Validity.TRUE_IS_BIGGER if r > MEASURING_RANGE_OHM else reg.Validity.TRUE_VALUE
            rf = reg.encode_channel(min(r, MEASURING_RANGE_OHM), alarm, reg.TestType.NONE, reg.Unit.OHM,
                                    validity, reg.DESCRIPTION_INSULATION)
        un = reg.encode_channel(self.voltage_v, reg.Alarm.NONE, test, reg.Unit.VOLT, reg.Validity.TRUE_VALUE,
                                reg.DESCRIPTION_VOLTAGE)
        self.bank.set_holding(reg.RESISTANCE_RF, rf)
        self.bank.set_holding(reg.VOLTAGE_UN, un)
        half = reg.encode_channel(self.voltage_v / 2, reg.Alarm.NONE, test, reg.Unit.VOLT, reg.Validity.TRUE_VALUE,
                                  reg.DESCRIPTION_VOLTAGE)
        self.bank.set_holding(reg.VOLTAGE_UL1E, half)
        self.bank.set_holding(reg.VOLTAGE_UL2E, half)
