"""Local OCPP 1.6J and 2.0.1 back office (central system, CSMS) for `make run`, the demo and the integration tests.

Built on the `ocpp` library's central-system side over `websockets`. On top of the library it validates every
incoming CALL and every CALLRESULT that answers one of its own calls against the official JSON schemas of the
connection's version with `jsonschema` (independently of the library), records every frame in both
directions, and offers behaviour switches (refuse connections, drop, reject the next calls, id tag statuses)
through a Python API and a tiny HTTP/JSON control API, the same for both versions.

Modules by job: `server.py` (BackOffice: listening, handshake checks and the version by subprotocol, sessions,
decisions, controls), `session.py` (recording and raw calls common to both versions), `v16.py` (the OCPP 1.6
session), `v201.py` (the OCPP 2.0.1 session), `ledger.py` (the 2.0.1 transaction ledger check), `schemas.py`
(frame and payload checks), `log.py` (the message log), `control.py` (the HTTP control API), `cli.py` (the
command line).
"""

from __future__ import annotations

from simulator.backoffice.cli import add_cli, run_cli
from simulator.backoffice.ledger import check_transaction_events, transaction_ledger
from simulator.backoffice.schemas import SchemaValidator, frame_errors
from simulator.backoffice.server import BackOffice

__all__ = [
    "BackOffice",
    "SchemaValidator",
    "add_cli",
    "check_transaction_events",
    "frame_errors",
    "run_cli",
    "transaction_ledger",
]
