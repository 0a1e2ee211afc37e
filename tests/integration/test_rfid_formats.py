"""A card that "works elsewhere but not here": the back office registered it in reversed byte order; the
[card_id] format makes the agent send exactly that. Simulator (PN532 on a pty), agent and back office are
real processes; the installer's `evsectl card --watch` shows the card in every format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator.backoffice import BackOffice
from tests.integration.harness import CP_ID, START_TIMEOUT_S, Rig

UID = "04A2B3C4D5E680"  # a 7-byte NTAG as the card sends it
REGISTERED = "80E6D5C4B3A204"  # what the provider's back office registered: the bytes reversed


def evsectl(rig: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    sock = str(rig.state_dir / "evsectl.sock")
    return subprocess.run([str(Path(sys.executable).parent / "evsectl"), "--socket", sock, *args],
                          capture_output=True, text=True, timeout=30, check=False)


async def start_with_format(rig_factory: Any, ocpp_version: str, card_id: str) -> Rig:
    """The simulator with a PN532, the agent config with this [card_id] table, the agent booted."""
    rig: Rig = await rig_factory(start=False, ocpp_version=ocpp_version)
    rig.sim_args = ["--rfid-model", "pn532"]
    await rig.start_sim()
    text = rig.agent_config.read_text()
    assert 'driver = "pn532"' in text, "the simulator did not write the PN532 into the agent config"
    rig.agent_config.write_text(text + "\n[card_id]\n" + card_id)
    rig.start_agent()
    await rig.office.wait_for("BootNotification", timeout=START_TIMEOUT_S, cp_id=CP_ID)
    return rig


@pytest.mark.parametrize("ocpp_version", ["1.6", "2.0.1"])
async def test_reversed_byte_order_registered_card_authorizes(rig_factory: Any, office: BackOffice,
                                                              ocpp_version: str) -> None:
    office.set_id_tag(REGISTERED, "Accepted")
    office.set_id_tag(UID, "Blocked")  # as read it would be refused: only the format makes it match
    rig = await start_with_format(rig_factory, ocpp_version, 'byte_order = "reversed"\n')
    await rig.wait_status(1, "Available")
    rig.card(UID)
    rig.plug(1)
    if ocpp_version == "1.6":
        start = await rig.wait_call("StartTransaction")
        assert start["payload"]["idTag"] == REGISTERED
        authorize = rig.calls("Authorize")
        assert [a["payload"]["idTag"] for a in authorize] == [REGISTERED]
    else:
        event = await office.wait_for("TransactionEvent", timeout=20.0, cp_id=CP_ID)
        started = [m for m in office.messages(CP_ID) if m["action"] == "TransactionEvent"
                   and m["payload"]["eventType"] == "Started"]
        assert event and started
        # the reader's technology gives the idToken type; the format gives the id
        assert started[0]["payload"]["idToken"] == {"idToken": REGISTERED, "type": "ISO14443"}
        assert started[0]["response"]["payload"]["idTokenInfo"]["status"] == "Accepted"
    await rig.wait_contactor(True)

    # the installer's view: the card in every format, the one sent marked, the reader's type and SAK
    watched = evsectl(rig, "--json", "card", "--watch", "--since", "0", "--count", "1")
    assert watched.returncode == 0, watched.stderr
    card = json.loads(watched.stdout.splitlines()[0])
    assert card["uid"] == UID and card["id_tag"] == REGISTERED and card["sak"] == "00"
    assert card["card_type"] == "MIFARE Ultralight / NTAG" and card["technology"] == "ISO14443A"
    assert card["formats"]["hex"] == UID and card["formats"]["hex reversed"] == REGISTERED
    human = evsectl(rig, "card", "--watch", "--since", "0", "--count", "1")
    assert "sent as" in human.stdout and REGISTERED in human.stdout and "SAK 00" in human.stdout
    status = json.loads(evsectl(rig, "--json", "status").stdout)
    assert status["cards"]["last"][-1]["id_tag"] == REGISTERED
    assert status["devices"]["rfid"]["ok"] is True
    # a UID identifies a person: the agent's log shows its last four characters only
    log = rig.agent_log()
    assert "**********E680" in log and "**********A204" in log
    assert UID not in log and REGISTERED not in log  # not in the driver's lines, the core's, nor the frames


async def test_config_token_type_reaches_the_201_transaction_event(rig_factory: Any, office: BackOffice) -> None:
    office.set_id_tag("X" + UID.lower(), "Accepted")
    rig = await start_with_format(rig_factory, "2.0.1", 'case = "lower"\nprefix = "X"\ntoken_type = "Local"\n')
    await rig.wait_status(1, "Available")
    rig.card(UID)
    rig.plug(1)
    await office.wait_for("TransactionEvent", timeout=20.0, cp_id=CP_ID)
    started = [m for m in office.messages(CP_ID) if m["action"] == "TransactionEvent"
               and m["payload"]["eventType"] == "Started"]
    assert started[0]["payload"]["idToken"] == {"idToken": "X04a2b3c4d5e680", "type": "Local"}
    authorize = [m["payload"]["idToken"] for m in office.messages(CP_ID) if m["action"] == "Authorize"]
    assert authorize == [{"idToken": "X04a2b3c4d5e680", "type": "Local"}]  # asked with the same type


async def test_reader_faults_through_the_control_api_and_the_masked_bundle(rig_factory: Any,
                                                                          office: BackOffice) -> None:
    office.set_id_tag(UID, "Accepted")
    rig = await start_with_format(rig_factory, "1.6", 'case = "upper"\n')
    await rig.wait_status(1, "Available")
    assert rig.sim_state()["rfid_model"] == "pn532"

    def reader_ok() -> bool:
        return bool(json.loads(evsectl(rig, "--json", "status").stdout)["devices"]["rfid"]["ok"])

    rig.fault("rfid", "no_answer")  # the chip stops answering: the agent shows the reader faulted
    await rig.office.wait_for(lambda: not reader_ok(), timeout=20.0)
    rig.fault("rfid", "no_answer", on=False)
    await rig.office.wait_for(reader_ok, timeout=20.0)  # woken and set up again
    rig.fault("rfid", "bad_checksum", value=1)  # one corrupted answer: NACKed and sent again
    rig.sim_call("/card", {"uid": "A1B2C3D4", "sak": 0x18, "atqa": 0x0002})
    office.set_id_tag("A1B2C3D4", "Accepted")
    rig.plug(1)
    start = await rig.wait_call("StartTransaction")
    assert start["payload"]["idTag"] == "A1B2C3D4"
    status = json.loads(evsectl(rig, "--json", "status").stdout)
    assert status["cards"]["last"][-1]["card_type"] == "MIFARE Classic 4K"
    assert status["devices"]["rfid"]["refused"]["checksum_errors"] >= 1

    bundle = evsectl(rig, "--json", "bundle")
    assert bundle.returncode == 0, bundle.stderr
    import tarfile

    with tarfile.open(json.loads(bundle.stdout)["path"]) as tar:
        member = tar.extractfile("status.json")
        assert member is not None
        cards = json.loads(member.read())["cards"]["last"]
        frames = [tar.extractfile(m) for m in tar.getmembers() if m.name.startswith("ocpp-frames")]
        text = b"".join(f.read() for f in frames if f is not None).decode()
    assert cards[-1]["uid"] == "****C3D4" and cards[-1]["id_tag"] == "****C3D4"
    assert "A1B2C3D4" not in json.dumps(cards) and "A1B2C3D4" not in text
