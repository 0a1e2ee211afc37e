"""The benchmark harness pieces that are cheap to check: the doc generator and the lean responder."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from bench import docgen
from bench.common import Figure
from bench.idle_baseline import baseline_modules
from bench.responder import answer, reply
from bench.rig import ROOT, ResponderProc

RESULTS = ROOT / "bench" / "results.json"
DOC = ROOT / "docs" / "bench.md"


def test_committed_doc_holds_the_table_of_the_committed_results() -> None:
    """docs/bench.md cannot quote figures that bench/results.json does not hold."""
    rows = docgen.load(RESULTS)
    assert rows, "bench/results.json is empty"
    doc = DOC.read_text()
    assert docgen.replace_table(doc, rows) == doc, "run `python -m bench.docgen` after changing results.json"


def test_docgen_replaces_only_the_generated_part() -> None:
    rows = [Figure("replay", 812.5, "msg/s", 400.0, 2.03, "ratio >= 2.0", True, "a | note"),
            Figure("stall", None, "-", None, None, "-", None, "benchmark crashed: x")]
    doc = f"# Title\n\nprose\n\n{docgen.BEGIN}\nold table\n{docgen.END}\n\nmore prose\n"
    out = docgen.replace_table(doc, rows)
    assert out.startswith("# Title\n\nprose\n\n") and out.endswith("\n\nmore prose\n")
    assert "old table" not in out
    assert "| replay | 812 | msg/s | 400 | 2.03 | ratio >= 2.0 | yes |" in out
    assert "| stall | - | - | - | - | - | - |" in out
    assert "- replay: a \\| note" in out
    assert docgen.replace_table(out, rows) == out


def test_docgen_refuses_a_doc_without_markers() -> None:
    with pytest.raises(ValueError):
        docgen.replace_table("# no markers\n", [])


def test_responder_answers_are_what_the_agent_expects() -> None:
    text, action = reply('[2,"42","StartTransaction",{"connectorId":1}]', 7)
    assert action == "StartTransaction"
    assert json.loads(text) == [3, "42", {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}]
    assert answer("MeterValues", 1) == {}
    assert answer("BootNotification", 1)["status"] == "Accepted"
    assert reply('[3,"1",{}]', 1) == ("", None)  # a CALLRESULT is not answered


def test_idle_baseline_leaves_out_the_project() -> None:
    names = ["sys", "agent", "agent.daemon", "drivers.gpio", "bench.launch", "__main__", "ocpp.v16", "websockets"]
    assert baseline_modules(names) == ["sys", "ocpp.v16", "websockets"]


def test_responder_process_answers_frames_and_counts() -> None:
    """The real process: a websocket client sends stored-style frames, the control channel reports them."""

    async def scenario() -> dict[str, object]:
        responder = ResponderProc()
        await responder.start()
        try:
            async with connect(responder.url("CP-T"), subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                               compression=None) as ws:
                await ws.send('[2,"b","BootNotification",{"chargePointModel":"m","chargePointVendor":"v"}]')
                assert json.loads(await ws.recv())[2]["status"] == "Accepted"
                for n, action in enumerate(("StartTransaction", "MeterValues", "MeterValues", "StopTransaction")):
                    await ws.send(f'[2,"{n}","{action}",{{}}]')
                    assert json.loads(await ws.recv())[1] == str(n)
                await responder.command("ping /ocpp/CP-T 5")
                await asyncio.sleep(0.1)
                await responder.command("ping /ocpp/CP-T 0")
            return await responder.stats("CP-T")
        finally:
            await responder.stop()

    stats = asyncio.run(scenario())
    assert stats["tx"] == 4
    assert stats["counts"] == {"BootNotification": 1, "StartTransaction": 1, "MeterValues": 2, "StopTransaction": 1}
    assert stats["start_answer"] is not None and stats["after_start"] is not None
    assert stats["pings"], "no ping round trip recorded"
