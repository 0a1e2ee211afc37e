"""Outbox semantics against the back office: CALLERROR retries, dead letters kept and shown, the -1 errata."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.integration.harness import Rig
from tests.integration.test_evsectl import evsectl


async def test_rejected_message_retried_then_kept_as_dead_letter_and_queue_moves_on(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp={"TransactionMessageAttempts": 2, "TransactionMessageRetryInterval": 1,
                                       "MeterValueSampleInterval": 0})
    start = await rig.start_session()
    tx = start["response"]["payload"]["transactionId"]
    await rig.wait_status(1, "Charging")
    rig.office.reject_next("StopTransaction", 5, error_code="InternalError")
    rig.card()  # local stop: the back office refuses the StopTransaction every time
    await rig.office.wait_for(lambda: len(rig.calls("StopTransaction")) >= 2, timeout=20)
    await asyncio.sleep(1.0)
    queue = json.loads(evsectl(rig, "--json", "queue").stdout)
    assert queue["stats"]["dead"] == 1, queue
    dead = queue["dead_letters"][0]
    assert dead["action"] == "StopTransaction" and dead["attempts"] == 2 and "InternalError" in dead["error"]
    assert dead["payload"]["transactionId"] == tx  # kept whole, not thrown away
    attempts = [m for m in rig.calls("StopTransaction") if m["payload"]["transactionId"] == tx]
    assert len(attempts) == 2  # TransactionMessageAttempts, then no more
    # the queue is not blocked by the dead letter: the next session goes through
    rig.unplug(1)
    await rig.wait_status(1, "Available")
    second = await rig.start_session()
    assert second["response"]["payload"]["transactionId"] != tx


async def test_errata_minus_one_when_start_transaction_never_succeeds(rig_factory: Any) -> None:
    rig: Rig = await rig_factory(ocpp={"TransactionMessageAttempts": 2, "TransactionMessageRetryInterval": 1,
                                       "MeterValueSampleInterval": 1})
    rig.office.reject_next("StartTransaction", 2, error_code="InternalError")
    rig.card()
    rig.plug(1)
    await rig.wait_status(1, "Charging")
    await asyncio.sleep(2.5)
    rig.card()
    stop = await rig.wait_call("StopTransaction", timeout=20)
    assert stop["payload"]["transactionId"] == -1  # OCPP 1.6 errata: the start never succeeded
    values = [m for m in rig.calls("MeterValues") if "transactionId" in m["payload"]]
    assert values and all(m["payload"]["transactionId"] == -1 for m in values)
