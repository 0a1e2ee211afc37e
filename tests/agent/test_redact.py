"""Secrets are masked in logs."""

from __future__ import annotations

import logging

from agent.redact import RedactingFilter, redact


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
