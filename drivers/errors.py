"""One error tree for every driver; OS and pymodbus errors are wrapped at the boundary."""

from __future__ import annotations


class DriverError(Exception):
    """Base of every driver error; carries the device name so the operator knows where to look."""

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device
        self.message = message


class CommunicationFault(DriverError):
    """The device did not answer correctly: port missing, CRC error, garbage, exception response."""


class DeviceTimeout(CommunicationFault):
    """A request got no answer within its timeout (cable cut, wrong id, device off)."""


class FrameError(CommunicationFault):
    """A response that does not answer the request: wrong function, unit or transaction id, byte count,
    CRC, a truncated frame, or a Modbus exception response.

    `kind` is the counter it is counted under (`drivers.modbus_frames.KINDS`); `exception_code` is set
    for kind "exception_code". Nothing of such a response is used.
    """

    def __init__(self, device: str, kind: str, message: str, exception_code: int | None = None) -> None:
        super().__init__(device, message)
        self.kind = kind
        self.exception_code = exception_code


class ImplausibleReading(CommunicationFault):
    """A well-formed answer whose values cannot be true: energy of 1e30 Wh, negative or going backwards,
    energy growing faster than the connector's power allows, voltage, current, power or frequency far out
    of bounds. It is a failed read: not published, not used as a baseline, not billed.

    `reason` is a stable name: "energy_backwards", "energy_jump", "energy_range", "unconfirmed" (no
    baseline yet and two readings disagree), "not_available", "not_finite", "voltage", "current", "power",
    "frequency". `registers` holds the raw blocks read, as {block start address: registers}, for the log.
    """

    def __init__(self, device: str, reason: str, message: str,
                 registers: dict[int, tuple[int, ...]] | None = None) -> None:
        super().__init__(device, message)
        self.reason = reason
        self.registers = registers or {}


class HardwareFault(DriverError):
    """The device answered but reports a fault, or its values are impossible.

    `code` is a stable machine-readable name, e.g. "energy_backwards", "contactor_welded",
    "contactor_not_closed", "lock_failure", "isolation_fault", "over_voltage".
    """

    def __init__(self, device: str, code: str, message: str) -> None:
        super().__init__(device, message)
        self.code = code


class UnsupportedDriver(DriverError):
    """A config asked for a driver, model or pin factory that this installation cannot provide."""


class ConfigError(DriverError):
    """A driver option or a model file is malformed."""
