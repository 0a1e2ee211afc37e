"""Secrets are masked in logs."""

from __future__ import annotations

import logging

from agent.redact import LOG_MAX_CHARS, RedactingFilter, clip, redact


def test_url_password_masked() -> None:
    assert redact("ftp://tech:s3cret@10.0.0.1:21/fw.bin") == "ftp://tech:***@10.0.0.1:21/fw.bin"
    assert redact("https://example.com/a") == "https://example.com/a"


def test_authorization_key_in_a_frame_masked() -> None:
    frame = '[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"0123456789abcdef0123"}]'
    assert "0123456789abcdef0123" not in redact(frame)
    assert redact("Authorization: Basic Q1A6c2VjcmV0") == "Authorization: Basic ***"


def test_filter_masks_arguments(caplog: object) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "download %s failed", ("ftp://u:pw@h/f",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "download ftp://u:***@h/f failed"


def test_url_password_masked_whatever_the_scheme() -> None:
    assert redact("x1ftp://u:pw@h/f and sftp+ssh://a:b@c") == "x1ftp://u:***@h/f and sftp+ssh://a:***@c"


def test_clipped_authorization_key_masked_to_the_end() -> None:
    """A frame cut inside the key value still hides what is left of it."""
    assert redact('{"key":"AuthorizationKey","value":"0123456789') == '{"key":"AuthorizationKey","value":"***'


def test_filter_clips_a_huge_record_to_head_and_length() -> None:
    frame = '[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"0123456789abcdef0123","pad":"' + \
        "x" * 1_000_000 + '"}]'
    record = logging.LogRecord("agent.ocpp.frames", logging.DEBUG, __file__, 1, "in %s", (frame,), None)
    RedactingFilter().filter(record)
    message = record.getMessage()
    assert len(message) < LOG_MAX_CHARS
    assert message.startswith('in [2,"1","ChangeConfiguration"')
    assert message.endswith(f"[clipped: {len(frame) + 3} chars in all]")
    assert "0123456789abcdef0123" not in message


def test_clip_masks_a_secret_across_the_cut() -> None:
    """The head is redacted before it is cut: a key straddling the cut leaks no character."""
    text = "x" * 4090 + "AuthorizationKey=0123456789abcdef" + "y" * 10_000
    clipped = clip(text, head_chars=4100)
    assert "0123" not in clipped
