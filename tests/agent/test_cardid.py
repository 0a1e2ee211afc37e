"""Card id formats as a table: one example card per row, the id each format makes of it (docs/rfid.md)."""

from __future__ import annotations

import pytest

from agent.cardid import (
    ID_TAG_MAX_V16,
    ID_TOKEN_MAX_V201,
    CardIdFormat,
    CardIdTooLong,
    CardLog,
    all_formats,
    format_id,
)
from drivers.base import CardRead, mask_id

UID4 = bytes.fromhex("A1B2C3D4")  # MIFARE Classic 1K
UID7 = bytes.fromhex("04A2B3C4D5E680")  # MIFARE Ultralight / DESFire
UID10 = bytes.fromhex("04112233445566778899")
EM = bytes.fromhex("0F00A1B2C3")  # an RDM6300's EM4100 frame (version byte + 4 tag bytes)

# (format, uid, expected id): the table docs/rfid.md shows
TABLE = [
    (CardIdFormat(), UID4, "A1B2C3D4"),
    (CardIdFormat(), UID7, "04A2B3C4D5E680"),
    (CardIdFormat(), UID10, "04112233445566778899"),
    (CardIdFormat(), EM, "0F00A1B2C3"),
    (CardIdFormat(case="lower"), UID7, "04a2b3c4d5e680"),
    (CardIdFormat(byte_order="reversed"), UID4, "D4C3B2A1"),
    (CardIdFormat(byte_order="reversed"), UID7, "80E6D5C4B3A204"),
    (CardIdFormat(byte_order="reversed", case="lower"), UID4, "d4c3b2a1"),
    (CardIdFormat(encoding="decimal"), UID4, "2712847316"),
    (CardIdFormat(encoding="decimal", byte_order="reversed"), UID4, "3569595041"),
    (CardIdFormat(encoding="decimal"), UID7, "1304792892040832"),
    (CardIdFormat(encoding="decimal", byte_order="reversed"), UID7, "36282602821493252"),
    (CardIdFormat(encoding="decimal", length=12), UID4, "002712847316"),
    (CardIdFormat(encoding="decimal", byte_order="reversed", length=10, keep="last"), UID7, "2821493252"),
    (CardIdFormat(length=14, pad_side="right"), UID4, "A1B2C3D4000000"),
    (CardIdFormat(length=16, pad_char="F"), UID4, "FFFFFFFFA1B2C3D4"),
    (CardIdFormat(length=8), UID7, "04A2B3C4"),  # the reader that drops UID bytes, reproduced on purpose
    (CardIdFormat(length=8, keep="last"), UID7, "C4D5E680"),
    (CardIdFormat(prefix="NL-"), UID4, "NL-A1B2C3D4"),
    (CardIdFormat(prefix="X", byte_order="reversed", case="lower", length=10), UID4, "X00d4c3b2a1"),
]


@pytest.mark.parametrize(("fmt", "uid", "expected"), TABLE)
def test_format_table(fmt: CardIdFormat, uid: bytes, expected: str) -> None:
    assert fmt.problems() == []
    assert fmt.id_of(uid) == expected
    assert format_id(fmt, uid, ID_TOKEN_MAX_V201) == expected


def test_default_is_upper_hex_in_card_order() -> None:
    assert CardIdFormat() == CardIdFormat(byte_order="as_read", encoding="hex", case="upper", length=0, prefix="")
    assert CardIdFormat().token_type_of("ISO14443A") == "ISO14443"


@pytest.mark.parametrize(("fmt", "uid", "limit"), [
    (CardIdFormat(encoding="decimal"), UID10, ID_TAG_MAX_V16),  # 23 digits: more than a 1.6 idTag
    (CardIdFormat(prefix="CARD-"), UID10, ID_TAG_MAX_V16),
    (CardIdFormat(prefix="PREFIX-PREFIX-", encoding="decimal", byte_order="reversed"), UID10, ID_TOKEN_MAX_V201),
])
def test_too_long_for_the_protocol_is_refused_not_cut(fmt: CardIdFormat, uid: bytes, limit: int) -> None:
    with pytest.raises(CardIdTooLong):
        format_id(fmt, uid, limit)


def test_the_limits_fit_every_uid_in_the_default_format() -> None:
    assert len(format_id(CardIdFormat(), UID10, ID_TAG_MAX_V16)) == 20
    assert format_id(CardIdFormat(encoding="decimal"), UID10, ID_TOKEN_MAX_V201) == "19205524969286327044249"


@pytest.mark.parametrize(("technology", "configured", "expected"), [
    ("ISO14443A", "", "ISO14443"),
    ("ISO15693", "", "ISO15693"),
    ("EM4100", "", "ISO14443"),
    ("ISO14443A", "Local", "Local"),
    ("ISO15693", "Central", "Central"),
])
def test_token_type_from_reader_or_config(technology: str, configured: str, expected: str) -> None:
    assert CardIdFormat(token_type=configured).token_type_of(technology) == expected


@pytest.mark.parametrize(("fmt", "field"), [
    (CardIdFormat(byte_order="little"), "byte_order"),
    (CardIdFormat(encoding="base64"), "encoding"),
    (CardIdFormat(case="title"), "case"),
    (CardIdFormat(length=40), "length"),
    (CardIdFormat(pad_char="00"), "pad_char"),
    (CardIdFormat(pad_side="middle"), "pad_side"),
    (CardIdFormat(keep="middle"), "keep"),
    (CardIdFormat(prefix="has space"), "prefix"),
    (CardIdFormat(token_type="eMAID"), "token_type"),
])
def test_invalid_formats_name_their_field(fmt: CardIdFormat, field: str) -> None:
    assert [name for name, _ in fmt.problems()] == [field]


def test_watch_shows_every_format_at_once() -> None:
    formats = all_formats(UID4)
    assert formats["hex"] == "A1B2C3D4" and formats["hex reversed"] == "D4C3B2A1"
    assert formats["decimal"] == "2712847316" and formats["decimal reversed"] == "3569595041"
    assert formats["decimal reversed 10"] == "3569595041" and formats["hex 14 right-padded"] == "A1B2C3D4000000"
    assert all_formats(UID7)["decimal reversed 10"] == "2821493252"  # the last ten digits


def test_card_log_formats_keeps_the_last_and_masks_on_request() -> None:
    log = CardLog(CardIdFormat(byte_order="reversed", prefix="X", token_type="Local"), ID_TAG_MAX_V16)
    seen = log.record(CardRead("rfid", UID4, "ISO14443A", 1.0, 0x08, 0x0004, "MIFARE Classic 1K"), 1000.0)
    assert seen.id_tag == "XD4C3B2A1" and seen.token_type == "Local" and seen.refused is None
    assert seen.formats["configured"] == "XD4C3B2A1" and seen.formats["hex"] == "A1B2C3D4"
    assert log.token_type_for("XD4C3B2A1") == "Local" and log.token_type_for("A1B2C3D4") is None
    too_long = log.record(CardRead("rfid", UID10, "ISO14443A", 2.0), 1001.0)
    assert too_long.id_tag is None and "20" in (too_long.refused or "")
    for n in range(30):
        log.record(CardRead("rfid", bytes([n, 1, 2, 3]), "ISO14443A", 3.0), 1002.0)
    assert log.total == 32 and len(log.since(0)) == 20 and [c.seq for c in log.since(30)] == [31, 32]
    status = log.status(masked=True)
    assert all(c["uid"].startswith("****") and "0203" not in c["uid"][:-4] for c in status["last"])
    assert all(v.startswith("*") for c in status["last"] for v in c["formats"].values())
    assert log.status()["last"][-1]["uid"] == "1D010203"


def test_mask_keeps_the_last_four() -> None:
    assert mask_id("04A2B3C4D5E680") == "**********E680"
    assert mask_id("ABC") == "ABC"


# ---- the [card_id] table of the agent config -----------------------------------------------------------------


def _config(card_id: str, version: str = "1.6") -> str:
    from tests.agent.test_config import BASE

    text = BASE.replace('url = "ws://127.0.0.1:9000/ocpp"\n',
                        f'url = "ws://127.0.0.1:9000/ocpp"\nocpp_version = "{version}"\n', 1)
    return text + "\n[card_id]\n" + card_id


def test_config_card_id_parses_and_round_trips() -> None:
    from agent.config import config_to_toml, parse_config

    cfg = parse_config(_config('byte_order = "reversed"\nencoding = "decimal"\nlength = 10\nkeep = "last"\n'
                               'token_type = "Local"\n'), "agent.toml")
    assert cfg.card_id == CardIdFormat(byte_order="reversed", encoding="decimal", length=10, keep="last",
                                       token_type="Local")
    assert parse_config(config_to_toml(cfg), "written") == cfg
    from tests.agent.test_config import BASE

    assert parse_config(BASE, "agent.toml").card_id == CardIdFormat()  # no table: the default


@pytest.mark.parametrize(("table", "version", "message"), [
    ('byte_order = "little"\n', "1.6", "card_id.byte_order"),
    ('token_type = "eMAID"\n', "2.0.1", "card_id.token_type"),
    ('length = 22\n', "1.6", "at most 20"),
    ('prefix = "ABCDEFGHIJ"\nlength = 30\n', "2.0.1", "at most 36"),
    ('lenght = 8\n', "1.6", "did you mean 'length'"),
])
def test_config_card_id_refused_with_its_line(table: str, version: str, message: str) -> None:
    from agent.config import ConfigError, parse_config

    text = _config(table, version)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "agent.toml")
    assert message in str(info.value)
    line = text.splitlines().index(table.splitlines()[-1 if "length = 30" in table else 0]) + 1
    assert f"agent.toml:{line}" in str(info.value)


@pytest.mark.parametrize(("line", "masked"), [
    ("Authorized(connector_id=None, id_tag='80E6D5C4B3A204', source=card)", "id_tag='**********A204'"),
    ('[2,"7","Authorize",{"idTag":"0F00A1B2C3"}]', '"idTag":"******B2C3"'),
    ('{"idToken": {"idToken": "04a2b3c4d5e680", "type": "ISO14443"}}', '"idToken": "**********e680"'),
    ("{'id_token': 'A1B2C3D4', 'parent_id_tag': 'GROUP-7'}", "'parent_id_tag': '***UP-7'"),
])
def test_logs_show_card_ids_masked_beyond_the_last_four(line: str, masked: str) -> None:
    import logging

    from agent.redact import RedactingFilter

    record = logging.LogRecord("agent", logging.INFO, __file__, 1, "%s", (line,), None)
    RedactingFilter().filter(record)
    assert masked in record.getMessage()
    assert "D5C4B3A2" not in record.getMessage() and "00A1B2" not in record.getMessage()
