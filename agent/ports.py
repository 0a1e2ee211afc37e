"""The narrow interfaces between the runtime and the protocol adapters.

The most important is the transaction journal: the runtime reports what happened to a transaction
(`started`, `sample`, `stopped`, and the session events between them) and the active protocol version turns
it into its own messages, committed to the store's outbox (1.6: StartTransaction, MeterValues,
StopTransaction with the transactionId rewrite; 2.0.1: TransactionEvent). The runtime writes no OCPP.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.core.events import SessionEvent, StopReason
from agent.metering import Sample, SignedValue
from agent.store import OutboxMessage


class SampleTrigger(enum.Enum):
    """Why a sample of a transaction was taken."""

    BEGIN = "begin"  # the reading the transaction starts from
    PERIODIC = "periodic"  # the sample interval
    CLOCK = "clock"  # a clock-aligned instant
    TRIGGER = "trigger"  # the back office asked for it
    END = "end"  # the reading the transaction stops at


@dataclass(frozen=True, slots=True)
class Stamp:
    """When a record was made: wall time (corrected), monotonic time, whether the wall clock was trusted, and
    whether the back office was out of reach then (2.0.1 marks such transaction events `offline`)."""

    wall: float
    monotonic: float
    clock_trusted: bool
    offline: bool = False


@dataclass(frozen=True, slots=True)
class TxStarted:
    """A transaction the station started (the journal records it and queues its start in one commit)."""

    local_tx_id: int
    connector_id: int
    id_tag: str
    meter_start_wh: float
    timestamp: float
    reservation_id: int | None = None
    begin: Sample | None = None  # the reading at the start, for the measurands a start message carries
    signed: SignedValue | None = None  # a signing meter's begin data set (stored before this is journaled)


@dataclass(frozen=True, slots=True)
class TxStopped:
    """A transaction that ended, with its final reading (end: the sample to report with it, if any)."""

    local_tx_id: int
    connector_id: int
    meter_stop_wh: float
    timestamp: float
    reason: StopReason
    id_tag: str | None = None
    end: Sample | None = None
    signed: SignedValue | None = None  # a signing meter's end data set (it holds the begin reading too)


class ChangeResult:
    """The outcome of a configuration change, in the words both OCPP versions use for it."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    REBOOT_REQUIRED = "RebootRequired"
    NOT_SUPPORTED = "NotSupported"


class ConfigVocabulary(Protocol):
    """The active protocol version's configuration, by its own names (1.6 keys; 2.0.1 variables): what the
    technician CLI lists and changes, and what the version's handlers read. The runtime only carries it."""

    def entries(self, keys: list[str] | None = None) -> tuple[list[dict[str, object]], list[str]]:
        """(known entries, unknown names); secrets are never listed."""
        ...

    def change(self, key: str, value: str) -> str:
        """Validate, persist and apply a change; the version's answer status."""
        ...

    def set_local(self, key: str, value: int | bool | str) -> None:
        """A change made by the charger itself."""
        ...

    def get_int(self, key: str, default: int = 0) -> int:
        """An integer entry."""
        ...

    def get_bool(self, key: str, default: bool = False) -> bool:
        """A boolean entry."""
        ...

    def get_str(self, key: str, default: str = "") -> str:
        """A string entry."""
        ...


class GuardedConfig(ConfigVocabulary, Protocol):
    """A configuration the security rules take part in: they hear changes, may refuse one, and keep secrets."""

    listeners: list[Callable[[str], None]]
    change_guards: list[Callable[[str, int | bool | str], str | None]]
    secret_setter: Callable[[str, str], str] | None


class TransactionJournal(Protocol):
    """Turns transaction facts into the active protocol's messages in the outbox (durably, in order)."""

    protocol: str

    def started(self, tx: TxStarted, stamp: Stamp) -> None:
        """Record the transaction and queue its start message (raises DiskFull and store errors)."""
        ...

    def sample(self, local_tx_id: int, connector_id: int, sample: Sample, trigger: SampleTrigger, at: float,
               stamp: Stamp) -> bool:
        """Queue a transaction sample taken at `at`; False when the configured measurands gave nothing to send."""
        ...

    def keep_for_end(self, local_tx_id: int, sample: Sample, trigger: SampleTrigger, at: float,
                     stamp: Stamp) -> None:
        """Keep the values the protocol reports with the transaction's end (1.6: transactionData)."""
        ...

    def stopped(self, tx: TxStopped, stamp: Stamp) -> None:
        """Record the stop and queue the stop message (with the values kept for the end) in one commit."""
        ...

    def session_event(self, event: SessionEvent, stamp: Stamp) -> None:
        """A session event (authorized, EV connected, energy transfer started/suspended/resumed, deauthorized);
        a protocol that reports them (2.0.1: TransactionEvent trigger reasons) records them."""
        ...

    def confirm(self, msg: OutboxMessage, answer: dict[str, Any]) -> None:
        """The back office answered a queued message: delete it (and learn what the answer names) in one commit."""
        ...

    def id_when_dead(self, msg: OutboxMessage) -> int | None:
        """The back-office transaction id the later messages get when this one becomes a dead letter, if any."""
        ...
