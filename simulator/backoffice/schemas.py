"""Schema checks of the local back office: OCPP-J frame structure and OCPP 1.6 payloads.

Every incoming CALL and every CALLRESULT answering one of the back office's own calls is validated against the
official 1.6 JSON schemas with `jsonschema`, independently of the `ocpp` library.
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

SCHEMA_DIR = Path(ocpp.v16.__file__).parent / "schemas"
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
    """Validates OCPP 1.6 payloads against the schema files shipped in `ocpp/v16/schemas`."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self._dir = schema_dir
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
        return self._validator(action) is not None

    def errors(self, action: str, payload: object, *, response: bool = False) -> list[str]:
        """Every schema error of a request (or, with response=True, a confirmation) payload."""
        name = f"{action}Response" if response else action
        validator = self._validator(name)
        if validator is None:
            return [f"no OCPP 1.6 schema for {name!r}"]
        found = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '<payload>'}: {e.message}" for e in found]


def frame_errors(frame: object) -> list[str]:
    """Structural errors of a decoded OCPP-J frame (section 4 of the OCPP-J 1.6 spec)."""
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
        if frame[2] not in ERROR_CODES_16:
            problems.append(f"error code {frame[2]!r} is not an OCPP 1.6 error code")
        if not isinstance(frame[3], str):
            problems.append("error description is not a string")
        if not isinstance(frame[4], dict):
            problems.append("error details is not a JSON object")
    return problems

