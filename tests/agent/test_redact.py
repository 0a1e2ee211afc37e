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


def test_a_text_is_left_alone_only_when_no_pattern_can_match() -> None:
    """redact() skips the masking patterns for a text without their words: never for one they would change.
    Texts built from the patterns' own pieces, in mixed case and with the characters IGNORECASE takes for
    letters (Kelvin sign, dotted and dotless i), must all be seen as possibly holding a secret when a
    pattern matches them."""
    import random
    import re

    import agent.redact as redact_module

    patterns = [v for v in vars(redact_module).values() if isinstance(v, re.Pattern)]
    assert len(patterns) >= 5
    pieces = ["id", "\u0130d", "\u0131D", "ID", "_", "tag", "TAG", "toKen", "to\u212aen", "Token", "'", '"', ":",
              "=", " ", "://", "u:p@", "Authorization", "Key", "Basic QUJD", ",", "value", "0123456789", "x", "\u00e9"]
    rng = random.Random(16)
    matched = 0
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        if any(p.search(text) for p in patterns):
            matched += 1
            assert redact_module.may_hold_secret(text), text
    assert matched > 200  # the generator does reach the patterns
    assert not redact_module.may_hold_secret('[3,"1",{"currentTime":"2024-01-01T00:00:00Z"}]')
    assert redact('[2,"1","Authorize",{"İdTag":"04A1B2C3D4"}]') == '[2,"1","Authorize",{"İdTag":"******C3D4"}]'
