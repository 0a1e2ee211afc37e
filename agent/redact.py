"""Secrets never reach a log: URL passwords and the OCPP AuthorizationKey are masked in every record."""

from __future__ import annotations

import logging
import re

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s\"']*):[^@/\s\"']*@")
_AUTH_KEY = re.compile(r'(?P<head>"key"\s*:\s*"AuthorizationKey"\s*,\s*"value"\s*:\s*")[^"]*(?P<tail>")')
_AUTH_KEY_KW = re.compile(r"(?P<head>AuthorizationKey['\"]?\s*[,:=]\s*(?:value\s*[:=]\s*)?['\"]?)[^'\"\s,}]+")
_BASIC = re.compile(r"(?P<head>Authorization['\"]?\s*[:=]\s*['\"]?Basic\s+)[A-Za-z0-9+/=]+")


def redact(text: str) -> str:
    """The text with credentials masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _AUTH_KEY.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)
    text = _AUTH_KEY_KW.sub(lambda m: f"{m['head']}{MASK}", text)
    return _BASIC.sub(lambda m: f"{m['head']}{MASK}", text)


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in the final message (arguments included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True
