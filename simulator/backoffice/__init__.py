"""Local OCPP 1.6J back office (central system) for `make run`, the demo and the integration tests.

Built on the `ocpp` library's central-system side over `websockets`. On top of the library it validates every
incoming CALL and every CALLRESULT that answers one of its own calls against the official 1.6 JSON schemas
with `jsonschema` (independently of the library), records every frame in both directions, and offers
behaviour switches (refuse connections, drop, reject the next calls, id tag statuses) through a Python API
and a tiny HTTP/JSON control API.

Modules by job: `server.py` (BackOffice: listening, handshake checks, sessions, decisions, controls), `v16.py`
(the OCPP 1.6 session), `schemas.py` (frame and payload checks), `log.py` (the message log), `control.py` (the
HTTP control API), `cli.py` (the command line). A 2.0.1 session would sit beside `v16.py`.
"""

from __future__ import annotations

from simulator.backoffice.cli import add_cli, run_cli
from simulator.backoffice.schemas import SchemaValidator, frame_errors
from simulator.backoffice.server import BackOffice

__all__ = ["BackOffice", "SchemaValidator", "add_cli", "frame_errors", "run_cli"]
