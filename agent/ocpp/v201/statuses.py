"""The 2.0.1 words of the core's statuses and faults: connectorStatus of a StatusNotification, and the
component and variable a fault is reported on with NotifyEvent.

2.0.1's StatusNotification carries no error code: a connector that is not free is Occupied, and a fault is a
NotifyEvent on the component's Problem variable (the device model's words, appendix 3 of the spec).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.events import FAULT_EMERGENCY_STOP, FAULT_LOCAL_LIST_CONFLICT, ConnectorStatus, DeviceRole, Fault

# core status (1.6 words) -> ConnectorStatusEnumType
CONNECTOR_STATUS: dict[ConnectorStatus, str] = {
    ConnectorStatus.AVAILABLE: "Available",
    ConnectorStatus.PREPARING: "Occupied",
    ConnectorStatus.CHARGING: "Occupied",
    ConnectorStatus.SUSPENDED_EV: "Occupied",
    ConnectorStatus.SUSPENDED_EVSE: "Occupied",
    ConnectorStatus.FINISHING: "Occupied",
    ConnectorStatus.RESERVED: "Reserved",
    ConnectorStatus.UNAVAILABLE: "Unavailable",
    ConnectorStatus.FAULTED: "Faulted",
}


def connector_status(status: ConnectorStatus) -> str:
    """The connectorStatus of a core status."""
    return CONNECTOR_STATUS[status]


@dataclass(frozen=True, slots=True)
class FaultReport:
    """Where a fault shows in the device model: the component (EVSE-scoped or not) and its variable."""

    component: str
    variable: str = "Problem"
    evse_scoped: bool = True  # on the EVSE/connector of the fault, not on the station as a whole


# the fault codes of the drivers and the core -> the component that has the problem
_BY_CODE = {
    "energy_backwards": FaultReport("PowerMeter"),
    "meter_replaced": FaultReport("PowerMeter"),
    "isolation_fault": FaultReport("InsulationMonitor"),  # a ground failure shows on the isolation monitor
    "isolation_warning": FaultReport("InsulationMonitor"),  # reported with a lower severity (monitors.py)
    "imd_device_error": FaultReport("InsulationMonitor"),
    "imd_self_test_failed": FaultReport("InsulationMonitor"),
    "imd_communication": FaultReport("InsulationMonitor"),
    "over_current": FaultReport("OverCurrentProtection", "Operated"),
    "over_voltage": FaultReport("ElectricalFeed", "Problem"),
    "under_voltage": FaultReport("ElectricalFeed", "Problem"),
    "over_temperature": FaultReport("TemperatureSensor", "Problem"),
    "lock_failure": FaultReport("ConnectorPlugRetentionLock"),
    "ev_communication": FaultReport("ChargingStatusIndicator"),
    "contactor_welded": FaultReport("PowerContactor"),
    "contactor_not_closed": FaultReport("PowerContactor"),
    # vehicle faults on the controller of the vehicle's protocol (techCode names the flag)
    **dict.fromkeys(("chademo_battery_over_voltage", "chademo_battery_under_voltage", "chademo_current_deviation",
                     "chademo_high_battery_temperature", "chademo_voltage_deviation",
                     "chademo_charging_system_fault"), FaultReport("CHAdeMOCtrlr")),
    **dict.fromkeys(("ccs_ress_temperature_inhibit", "ccs_ev_shift_position", "ccs_connector_lock_fault",
                     "ccs_ress_malfunction", "ccs_current_differential", "ccs_voltage_out_of_range",
                     "ccs_reserved_error", "ccs_system_incompatibility"), FaultReport("ISO15118Ctrlr")),
    FAULT_EMERGENCY_STOP: FaultReport("EmergencyStopSensor", "Tripped", evse_scoped=False),
    FAULT_LOCAL_LIST_CONFLICT: FaultReport("LocalAuthListCtrlr", evse_scoped=False),
}

# a generic device code ("it does not answer") is reported on the kind of device
_BY_ROLE = {
    DeviceRole.METER: FaultReport("PowerMeter"),
    DeviceRole.DC_CONTROLLER: FaultReport("Controller"),
    DeviceRole.CONTACTOR: FaultReport("PowerContactor"),
    DeviceRole.LOCK: FaultReport("ConnectorPlugRetentionLock"),
    DeviceRole.ID_READER: FaultReport("TokenReader", evse_scoped=False),
    DeviceRole.ESTOP: FaultReport("EmergencyStopSensor", "Tripped", evse_scoped=False),
    DeviceRole.INSULATION_MONITOR: FaultReport("InsulationMonitor"),
}
_GENERIC = FaultReport("Connector")


def fault_report(fault: Fault) -> FaultReport:
    """The component and variable a fault is reported on (NotifyEvent, HardWiredNotification)."""
    if fault.code in _BY_CODE:
        return _BY_CODE[fault.code]
    return _BY_ROLE.get(fault.role, _GENERIC)
