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
