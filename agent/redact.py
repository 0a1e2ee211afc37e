"""Secrets never reach a log: URL passwords and the OCPP AuthorizationKey are masked in every record, card ids
(idTag, idToken) beyond their last four characters.

Every pattern here runs on text from outside (frames, URLs, exception messages) and must stay linear in
its length: each one starts with a literal (the regex engine skips ahead to it) and every repeat after it
stops at a character the next part needs, so no start position rescans a long run. A scheme such as
`[a-zA-Z][a-zA-Z0-9+.-]*://` breaks that rule (every letter of a long run starts a new scan to its end:
quadratic, minutes for 1 MB); the URL pattern therefore anchors on `://` and leaves the scheme alone.
Oversized records are clipped to their head and length (`clip`) so that one big frame cannot flood a log.
"""

from __future__ import annotations

import logging
import re

from drivers.base import mask_id

MASK = "***"
LOG_HEAD_CHARS = 4096  # a clipped record keeps this much of its head, enough to read any OCPP frame's action
LOG_MAX_CHARS = 8192  # longer records are clipped (the frame log, the diagnostics ring, journald)
REDACT_MARGIN_CHARS = 512  # the head is redacted with this much beyond it, so no secret is cut in half unmasked

# ://user:password@  (the scheme before it is kept as it is)
_URL_PASSWORD = re.compile(r"(?P<head>://[^:/@\s\"']*):[^@/\s\"']*@")
# "key":"AuthorizationKey","value":"..."  (the closing quote may be missing in a clipped frame)
_AUTH_KEY = re.compile(r'(?P<head>"key"\s*:\s*"AuthorizationKey"\s*,\s*"value"\s*:\s*")[^"]*(?P<tail>"?)')
# AuthorizationKey=..., AuthorizationKey: value=..., and the JSON form again (its value is masked already)
_AUTH_KEY_KW = re.compile(
    r"(?P<head>AuthorizationKey['\"]?\s*[,:=]\s*(?:['\"]?value['\"]?\s*[:=]\s*)?['\"]?)[^'\"\s,}]+")
_BASIC = re.compile(r"(?P<head>Authorization['\"]?\s*[:=]\s*['\"]?Basic\s+)[A-Za-z0-9+/=]+")
# id_tag='...', "idTag": "...", "idToken": "...", 'parent_id_tag': '...': a card id identifies a person, so
# only its last four characters stay. Ids are at most 36 characters: each match looks no further than that.
_CARD_ID = re.compile(r"(?P<head>id_?(?:tag|token)['\"]?[ ]?[:=][ ]?['\"])(?P<id>[^'\"\s]{5,36})(?=['\"])",
                      re.IGNORECASE)
# Every pattern above needs one of these words (in any case): a text without any (a meter sample, most answers)
# has nothing to mask. The card id's words leave out the "i": IGNORECASE matches U+0130 and U+0131 there, which
# lower() does not turn into "i". Plain substring searches of the lowered text take a few microseconds per KB;
# five regex scans (or one with IGNORECASE alternatives) take several times longer, and the frame log redacts
# every frame (docs/bench.md).
_SECRET_WORDS = ("://", "authorization", "dtag", "d_tag", "dtoken", "d_token")


def may_hold_secret(text: str) -> bool:
    """Whether any masking pattern of redact() can match in the text (linear: substring searches)."""
    lowered = text.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact(text: str) -> str:
    """The text with credentials masked."""
    if not may_hold_secret(text):
        return text
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _AUTH_KEY.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", text)
    text = _AUTH_KEY_KW.sub(lambda m: f"{m['head']}{MASK}", text)
    text = _BASIC.sub(lambda m: f"{m['head']}{MASK}", text)
    return _CARD_ID.sub(lambda m: f"{m['head']}{mask_id(m['id'])}", text)


def clip(text: str, head_chars: int = LOG_HEAD_CHARS) -> str:
    """The text redacted, cut to its head and its length when it is longer than head_chars."""
    if len(text) <= head_chars:
        return redact(text)
    head = redact(text[: head_chars + REDACT_MARGIN_CHARS])[:head_chars]
    return f"{head}... [clipped: {len(text)} chars in all]"


REDACTED = "redacted"  # a LogRecord attribute: its message is redacted and clipped already (agent/framelog.py)


def clean(message: str) -> str:
    """A log message redacted, and clipped when longer than LOG_MAX_CHARS."""
    return clip(message) if len(message) > LOG_MAX_CHARS else redact(message)


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in the final message (arguments included) and clips huge ones."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, REDACTED, False):
            return True
        message = record.getMessage()
        cleaned = clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = clip(text, LOG_MAX_CHARS) if len(text) > LOG_MAX_CHARS else redact(text)
        return True
