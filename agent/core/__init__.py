"""The pure heart of the charger: connector state machines, session rules, authorization, smart charging.

No I/O, no asyncio, no OCPP library: inputs in, decisions out, the clock passed in.

How the adapter and the hardware poller drive it:

    core = ChargePointCore(CoreSettings(connectors=(ConnectorConfig(max_current_a=32, has_lock=True),)),
                           tx_id_allocator=store.next_local_tx_id)
    core.restore(availability=store.availability(), profiles=store.profiles(), energy_wh={1: meter_wh})
    send(core.current_statuses(now))                  # after BootNotification / after every reconnect
    execute(core.handle(Tick(), now, monotonic))      # at boot: first SetLimit / ShowIndicator

    outputs = core.handle(PlugChanged(1, True), now, monotonic)     # hardware observations
    outputs = core.handle(Tick(), now, monotonic)                   # about once a second
    answer, outputs = core.remote_start(RemoteStart(1, "TAG"), now) # back-office commands

Every call returns a list of outputs to execute in order: SetContactor/SetLimit/SetLock/ShowIndicator go to
agent/hardware; StatusChanged, TransactionStarted/Stopped, ReservationEnded become messages (and store
rows); NeedAuthorize asks the adapter to resolve an id (auth.decide_local with the local list and cache,
else an Authorize call) and feed the answer back as AuthResult. StartTransaction's answer comes back as
TransactionConfirmed. Transaction ids: the core calls `tx_id_allocator()` (the store's persistent
counter) for every new transaction; without one it counts from `first_tx_id`.

`core.settings` is a frozen CoreSettings: assign a `dataclasses.replace`d copy after ChangeConfiguration.
`core.profiles` is the installed charging profiles (persist them after set/clear); limits are
re-evaluated at every period boundary on Tick. `core.snapshot()` feeds evsectl.
"""

from __future__ import annotations

from agent.core.auth import (
    AuthEntry,
    AuthSettings,
    DecisionAction,
    DecisionSource,
    LocalDecision,
    cache_update,
    decide_local,
    list_conflict,
)
from agent.core.chargepoint import ChargePointCore, CoreSettings
from agent.core.connector import Blocker, ConnectorConfig
from agent.core.events import (
    FAULT_EMERGENCY_STOP,
    FAULT_LOCAL_LIST_CONFLICT,
    AuthorizationRejected,
    AuthResult,
    AuthStatus,
    AvailabilityResult,
    CancelReservation,
    CancelReservationResult,
    ChangeAvailability,
    ClearChargingProfile,
    ClearProfileResult,
    Command,
    ConnectorStatus,
    DeviceRole,
    EstopChanged,
    EvReadyChanged,
    Fault,
    FaultCleared,
    FaultRaised,
    IdPresented,
    IndicatorState,
    Input,
    IsolationChanged,
    LimitChanged,
    LinkChanged,
    MeterSample,
    NeedAuthorize,
    Output,
    PlugChanged,
    ProfileResult,
    RemoteStart,
    RemoteStartResult,
    RemoteStop,
    RemoteStopResult,
    ReservationEnded,
    ReservationEndReason,
    ReservationResult,
    ReserveNow,
    ResetKind,
    ResetRequested,
    ResetResult,
    SetChargingProfile,
    SetContactor,
    SetLimit,
    SetLock,
    ShowIndicator,
    StatusChanged,
    StopReason,
    Tick,
    TransactionConfirmed,
    TransactionStarted,
    TransactionStopped,
    UnlockRequested,
    UnlockResult,
)
from agent.core.limits import (
    ChargingProfile,
    ChargingSchedule,
    CompositePeriod,
    ElectricalSetup,
    Limit,
    ProfileKind,
    ProfilePurpose,
    RateUnit,
    Recurrency,
    SchedulePeriod,
    clear_profiles,
    composite_schedule,
    install_profile,
    limit_at,
)

__all__ = [
    "FAULT_EMERGENCY_STOP",
    "FAULT_LOCAL_LIST_CONFLICT",
    "AuthEntry",
    "AuthResult",
    "AuthSettings",
    "AuthStatus",
    "AuthorizationRejected",
    "AvailabilityResult",
    "Blocker",
    "CancelReservation",
    "CancelReservationResult",
    "ChangeAvailability",
    "ChargePointCore",
    "ChargingProfile",
    "ChargingSchedule",
    "ClearChargingProfile",
    "ClearProfileResult",
    "Command",
    "CompositePeriod",
    "ConnectorConfig",
    "ConnectorStatus",
    "CoreSettings",
    "DecisionAction",
    "DecisionSource",
    "DeviceRole",
    "ElectricalSetup",
    "EstopChanged",
    "EvReadyChanged",
    "Fault",
    "FaultCleared",
    "FaultRaised",
    "IdPresented",
    "IndicatorState",
    "Input",
    "IsolationChanged",
    "Limit",
    "LimitChanged",
    "LinkChanged",
    "LocalDecision",
    "MeterSample",
    "NeedAuthorize",
    "Output",
    "PlugChanged",
    "ProfileKind",
    "ProfilePurpose",
    "ProfileResult",
    "RateUnit",
    "Recurrency",
    "RemoteStart",
    "RemoteStartResult",
    "RemoteStop",
    "RemoteStopResult",
    "ReservationEndReason",
    "ReservationEnded",
    "ReservationResult",
    "ReserveNow",
    "ResetKind",
    "ResetRequested",
    "ResetResult",
    "SchedulePeriod",
    "SetChargingProfile",
    "SetContactor",
    "SetLimit",
    "SetLock",
    "ShowIndicator",
    "StatusChanged",
    "StopReason",
    "Tick",
    "TransactionConfirmed",
    "TransactionStarted",
    "TransactionStopped",
    "UnlockRequested",
    "UnlockResult",
    "cache_update",
    "clear_profiles",
    "composite_schedule",
    "decide_local",
    "install_profile",
    "limit_at",
    "list_conflict",
]
