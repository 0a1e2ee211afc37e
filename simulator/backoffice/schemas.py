"""Schema checks of the local back office: OCPP-J frame structure and OCPP 1.6 and 2.0.1 payloads.

Every incoming CALL and every CALLRESULT answering one of the back office's own calls is validated against the
official JSON schemas of the session's version (shipped in `ocpp/v16/schemas`, `ocpp/v201/schemas`) with
`jsonschema`, independently of the `ocpp` library.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import ocpp.v16
import ocpp.v201

SCHEMA_DIR = Path(ocpp.v16.__file__).parent / "schemas"
SCHEMA_DIR_201 = Path(ocpp.v201.__file__).parent / "schemas"
V16, V201 = "1.6", "2.0.1"
CALL, CALLRESULT, CALLERROR = 2, 3, 4
UNIQUE_ID_MAX_LEN = 36  # OCPP-J 1.6 section 4.1.1: the unique id is at most 36 characters
# OCPP-J 1.6 section 4.2.3 (spelling as in the spec: FormationViolation, OccurenceConstraintViolation).
ERROR_CODES_16 = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)
# OCPP-J 2.0.1 section 4.3 (FormatViolation now spelt right; RpcFrameworkError and MessageTypeNotSupported new).
ERROR_CODES_201 = frozenset(
    {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    }
)
ERROR_CODES = {V16: ERROR_CODES_16, V201: ERROR_CODES_201}
# RFC 3339 date-time, as JSON Schema's "date-time" format means: the offset is mandatory.
_DATE_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _is_date_time(value: object) -> bool:
    """JSON Schema "date-time" check (RFC 3339), without the optional rfc3339-validator package."""
    if not isinstance(value, str):
        return True  # the "type" keyword reports non-strings
    if not _DATE_TIME_RE.match(value):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("z", "Z").replace("t", "T").replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_uri(value: object) -> bool:
    """JSON Schema "uri" check: an absolute URI with a scheme (rfc3987 is not installed)."""
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*$", parts.scheme)) and " " not in value


FORMAT_CHECKER = jsonschema.FormatChecker(formats=())
FORMAT_CHECKER.checks("date-time")(_is_date_time)
FORMAT_CHECKER.checks("uri")(_is_uri)


class SchemaValidator:
    """Validates OCPP payloads of one version against the schema files the `ocpp` library ships."""

    def __init__(self, schema_dir: Path | None = None, *, version: str = V16) -> None:
        if version not in ERROR_CODES:
            raise ValueError(f"OCPP version must be one of {sorted(ERROR_CODES)}, got {version!r}")
        self.version = version
        self._dir = schema_dir or (SCHEMA_DIR if version == V16 else SCHEMA_DIR_201)
        self._cache: dict[str, Any] = {}

    def _validator(self, name: str) -> Any:
        if name not in self._cache:
            path = self._dir / f"{name}.json"
            if not path.is_file():
                self._cache[name] = None
            else:
                schema = json.loads(path.read_text(encoding="utf-8"))
                cls = jsonschema.validators.validator_for(schema)
                self._cache[name] = cls(schema, format_checker=FORMAT_CHECKER)
        return self._cache[name]

    def known(self, action: str) -> bool:
        """True when the action has a request schema."""
        return self._validator(self._name(action, response=False)) is not None

    def _name(self, action: str, *, response: bool) -> str:
        # 1.6 files: Action.json, ActionResponse.json; 2.0.1 files: ActionRequest.json, ActionResponse.json
        if response:
            return f"{action}Response"
        return action if self.version == V16 else f"{action}Request"

    def errors(self, action: str, payload: object, *, response: bool = False) -> list[str]:
        """Every schema error of a request (or, with response=True, a confirmation) payload."""
        name = self._name(action, response=response)
        validator = self._validator(name)
        if validator is None:
            return [f"no OCPP {self.version} schema for {name!r}"]
        found = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '<payload>'}: {e.message}" for e in found]


def frame_errors(frame: object, version: str = V16) -> list[str]:
    """Structural errors of a decoded OCPP-J frame (section 4 of the OCPP-J spec; the same in 1.6 and 2.0.1)."""
    if not isinstance(frame, list) or not frame:
        return ["frame is not a non-empty JSON array"]
    kind = frame[0]
    expected = {CALL: 4, CALLRESULT: 3, CALLERROR: 5}
    if kind not in expected or isinstance(kind, bool):
        return [f"unknown message type id {kind!r}"]
    problems = []
    if len(frame) != expected[kind]:
        problems.append(f"message type {kind} needs {expected[kind]} elements, got {len(frame)}")
    if len(frame) > 1:
        uid = frame[1]
        if not isinstance(uid, str) or not uid:
            problems.append(f"unique id {uid!r} is not a non-empty string")
        elif len(uid) > UNIQUE_ID_MAX_LEN:
            problems.append(f"unique id is {len(uid)} characters, at most {UNIQUE_ID_MAX_LEN} allowed")
    if kind == CALL and len(frame) == 4:
        if not isinstance(frame[2], str):
            problems.append("action is not a string")
        if not isinstance(frame[3], dict):
            problems.append("payload is not a JSON object")
    if kind == CALLRESULT and len(frame) == 3 and not isinstance(frame[2], dict):
        problems.append("payload is not a JSON object")
    if kind == CALLERROR and len(frame) == 5:
        if frame[2] not in ERROR_CODES[version]:
            problems.append(f"error code {frame[2]!r} is not an OCPP {version} error code")
        if not isinstance(frame[3], str):
            problems.append("error description is not a string")
        if not isinstance(frame[4], dict):
            problems.append("error details is not a JSON object")
    return problems

