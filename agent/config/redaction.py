"""Redaction of the config for `evsectl config` and diagnostics: secret-looking values become "***".

Not agent/redact.py: that one masks secrets inside log text; this one walks the plain config dict by key name.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
_SECRET_NAME_RE = re.compile(r"password|passwd|secret|token|key", re.IGNORECASE)


def _is_secret_name(name: str) -> bool:
    """A key that holds a secret: *password*, *secret*, *token*, *key*, but not a *_file path to one."""
    return bool(_SECRET_NAME_RE.search(name)) and not name.lower().endswith("_file")


def redact(value: Any, name: str = "") -> Any:
    """Replace non-empty values of secret-looking keys, recursively."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, name) for v in value]
    if name and _is_secret_name(name) and value not in (None, ""):
        return REDACTED
    return value
