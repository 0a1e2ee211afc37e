"""Session records and the pure rules about them: who may stop a transaction, reservations, invalid ids."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from agent.core.events import AuthSource, SuspendedBy

LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class Authorization:
    """An accepted id waiting for a plug (ConnectionTimeOut runs from granted_monotonic)."""

    id_tag: str
    parent_id_tag: str | None
    source: AuthSource
    granted_monotonic: float
    granted_wall: float = 0.0
    granted_energy_wh: float | None = None  # the connector's register when granted (None: not known yet)


@dataclass(slots=True)
class Reservation:
    """A reservation of a connector for an id (or any id with the same parent)."""

    reservation_id: int
    connector_id: int
    id_tag: str
    expiry: float
    parent_id_tag: str | None = None


class IntentKind(enum.Enum):
    """What a presented id is for, while its authorization is pending."""

    START = "start"  # start on a given connector
    STOP = "stop"  # stop the given connector's transaction if the group matches
    ANY = "any"  # shared reader: decide when the answer comes


@dataclass(frozen=True, slots=True)
class Intent:
    """A pending NeedAuthorize and what to do with its answer."""

    kind: IntentKind
    connector_id: int | None
    source: AuthSource = AuthSource.CARD
    token_type: str | None = None  # the presented id's type, handed on to Authorized


@dataclass(slots=True)
class Session:
    """A running transaction on a connector."""

    local_tx_id: int
    connector_id: int
    id_tag: str
    parent_id_tag: str | None
    start_wall: float
    start_monotonic: float
    meter_start_wh: float
    reservation_id: int | None = None
    transaction_id: int | None = None  # the back office's id, once StartTransaction is confirmed
    invalid: bool = False  # the back office refused the id after the start
    invalid_since_wh: float = 0.0
    energy_suspended: bool = False  # invalid id, StopTransactionOnInvalidId = false: no more energy
    energy_began: bool = False  # the power path closed at least once
    suspended_by: SuspendedBy | None = None  # since it began: who holds the energy back now (None: charging)


class InvalidIdAction(enum.Enum):
    """What to do with a transaction whose id the back office refused."""

    CONTINUE = "continue"  # still within MaxEnergyOnInvalidId
    SUSPEND = "suspend"  # StopTransactionOnInvalidId = false: SuspendedEVSE
    STOP = "stop"  # StopTransactionOnInvalidId = true: stop, reason DeAuthorized


def same_group(tx_id_tag: str, tx_parent: str | None, id_tag: str, parent: str | None) -> bool:
    """True when id_tag may stop a transaction started by tx_id_tag (same id, or the same parent id)."""
    if id_tag == tx_id_tag:
        return True
    if tx_parent is not None and (parent == tx_parent or id_tag == tx_parent):
        return True
    return parent is not None and parent == tx_id_tag


def reservation_accepts(reservation: Reservation, id_tag: str, parent: str | None) -> bool:
    """True when id_tag (with its parent) may use the reservation."""
    if id_tag == reservation.id_tag:
        return True
    return reservation.parent_id_tag is not None and parent == reservation.parent_id_tag


def invalid_id_action(
    energy_since_invalid_wh: float, max_energy_wh: float | None, stop_on_invalid: bool
) -> InvalidIdAction:
    """Apply MaxEnergyOnInvalidId, then StopTransactionOnInvalidId (OCPP 1.6 3.6.1 and the key table)."""
    if max_energy_wh is not None and energy_since_invalid_wh < max_energy_wh:
        return InvalidIdAction.CONTINUE
    return InvalidIdAction.STOP if stop_on_invalid else InvalidIdAction.SUSPEND
