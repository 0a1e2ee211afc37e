"""Card id formats: how a card's UID becomes the id the back office registered (docs/rfid.md).

One format, from the config's `[card_id]` table, is applied here for every reader (the runtime's reader
loop calls `CardLog.record`); the drivers only report the UID bytes in the order the card sent them. The
same card in every common format at once (`WATCH_FORMATS`) is what `evsectl card --watch` shows, so an
installer can see which one the back office registered. Pure: no I/O, no OCPP.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from drivers.base import CardRead, mask_id

BYTE_ORDERS = ("as_read", "reversed")
ENCODINGS = ("hex", "decimal")
CASES = ("upper", "lower")
PAD_SIDES = ("left", "right")
KEEP = ("first", "last")  # a longer id is cut to `length` keeping its first or its last characters
TOKEN_TYPES = ("ISO14443", "ISO15693", "Local", "Central")  # "" in the config: the reader's technology
ID_TAG_MAX_V16 = 20  # OCPP 1.6 idTag: CiString20
ID_TOKEN_MAX_V201 = 36  # OCPP 2.0.1 IdTokenType.idToken: identifierString 36
PREFIX_MAX = 16
# the reader's air interface -> the token type it proves; a 125 kHz EM4100 card has no type of its own, and
# back offices register those as ISO14443 (what this agent always sent)
TECHNOLOGY_TOKEN_TYPES = {"ISO14443A": "ISO14443", "ISO15693": "ISO15693"}
FALLBACK_TOKEN_TYPE = "ISO14443"
CARD_LOG_MAX = 20  # the last cards kept for evsectl and the diagnostics bundle
FORMATS_FIELDS = ("byte_order", "encoding", "case", "length", "pad_char", "pad_side", "keep", "prefix",
                  "token_type")


class CardIdTooLong(ValueError):
    """A card's formatted id exceeds what the protocol carries (it is refused, never cut silently)."""


@dataclass(frozen=True)
class CardIdFormat:
    """How a UID is written as an id; the default is the common one (upper-case hex, card order)."""

    byte_order: str = "as_read"
    encoding: str = "hex"
    case: str = "upper"
    length: int = 0  # 0: as long as the encoding makes it; else padded or cut to exactly this
    pad_char: str = "0"
    pad_side: str = "left"
    keep: str = "first"
    prefix: str = ""
    token_type: str = ""  # "": from the reader (ISO14443, ISO15693); or Local, Central as registered

    def problems(self) -> list[tuple[str, str]]:
        """(field, reason) for each value that cannot be used; [] when the format is valid."""
        out = []
        for name, choices in (("byte_order", BYTE_ORDERS), ("encoding", ENCODINGS), ("case", CASES),
                              ("pad_side", PAD_SIDES), ("keep", KEEP)):
            if getattr(self, name) not in choices:
                out.append((name, f"must be one of {', '.join(choices)}, got {getattr(self, name)!r}"))
        if self.token_type and self.token_type not in TOKEN_TYPES:
            out.append(("token_type", f"must be one of {', '.join(TOKEN_TYPES)} or left out, "
                                      f"got {self.token_type!r}"))
        if not 0 <= self.length <= ID_TOKEN_MAX_V201:
            out.append(("length", f"must be 0 (natural) to {ID_TOKEN_MAX_V201}, got {self.length}"))
        if len(self.pad_char) != 1 or not self.pad_char.isascii() or not self.pad_char.isprintable():
            out.append(("pad_char", f"must be one printable ASCII character, got {self.pad_char!r}"))
        if len(self.prefix) > PREFIX_MAX or not all("!" <= ch <= "~" for ch in self.prefix):
            out.append(("prefix", f"must be at most {PREFIX_MAX} printable ASCII characters without spaces"))
        return out

    def id_of(self, uid: bytes) -> str:
        """The id of a UID in this format (no length limit applied)."""
        data = uid[::-1] if self.byte_order == "reversed" else uid
        if self.encoding == "decimal":
            text = str(int.from_bytes(data, "big")) if data else ""
        else:
            text = data.hex()
            text = text.upper() if self.case == "upper" else text
        if self.length:
            if len(text) > self.length:
                text = text[: self.length] if self.keep == "first" else text[-self.length:]
            elif self.pad_side == "left":
                text = text.rjust(self.length, self.pad_char)
            else:
                text = text.ljust(self.length, self.pad_char)
        return self.prefix + text

    def token_type_of(self, technology: str) -> str:
        """The token type sent with the id: the config's, else the one the reader's technology proves."""
        return self.token_type or TECHNOLOGY_TOKEN_TYPES.get(technology, FALLBACK_TOKEN_TYPE)

    def describe(self) -> str:
        """The format in words, for the installer."""
        words = [f"{self.encoding}", "reversed bytes" if self.byte_order == "reversed" else "card order"]
        if self.encoding == "hex":
            words.append(f"{self.case} case")
        if self.length:
            words.append(f"{self.length} chars ({self.pad_side}-padded with {self.pad_char!r}, "
                         f"keeping the {self.keep} if longer)")
        if self.prefix:
            words.append(f"prefix {self.prefix!r}")
        return ", ".join(words)


def format_id(fmt: CardIdFormat, uid: bytes, max_len: int) -> str:
    """The id of a UID in a format; CardIdTooLong when it exceeds max_len (20 in 1.6, 36 in 2.0.1)."""
    text = fmt.id_of(uid)
    if len(text) > max_len:
        raise CardIdTooLong(f"{len(text)} characters, more than the {max_len} the protocol carries")
    return text


# The formats back offices commonly register, shown side by side by `evsectl card --watch`.
WATCH_FORMATS: dict[str, CardIdFormat] = {
    "hex": CardIdFormat(),
    "hex lower": CardIdFormat(case="lower"),
    "hex reversed": CardIdFormat(byte_order="reversed"),
    "hex reversed lower": CardIdFormat(byte_order="reversed", case="lower"),
    "decimal": CardIdFormat(encoding="decimal"),
    "decimal reversed": CardIdFormat(encoding="decimal", byte_order="reversed"),
    "decimal reversed 10": CardIdFormat(encoding="decimal", byte_order="reversed", length=10, keep="last"),
    "hex 14 right-padded": CardIdFormat(length=14, pad_side="right"),
}


def all_formats(uid: bytes) -> dict[str, str]:
    """The UID in every format of WATCH_FORMATS."""
    return {name: fmt.id_of(uid) for name, fmt in WATCH_FORMATS.items()}


@dataclass(frozen=True)
class CardSeen:
    """One card read, as evsectl shows it: what the reader saw, the id sent (or why none), every format."""

    seq: int
    wall: float
    reader: str
    technology: str
    uid: str  # upper-case hex, card order
    uid_bytes: int
    sak: int | None
    atqa: int | None
    card_type: str
    id_tag: str | None  # None: refused (see `refused`)
    token_type: str
    refused: str | None = None
    formats: dict[str, str] = field(default_factory=dict)

    def to_dict(self, *, masked: bool = False) -> dict[str, Any]:
        """JSON-able; masked: every id beyond its last four characters (for what leaves the station)."""
        data = dataclasses.asdict(self)
        data["sak"] = None if self.sak is None else f"{self.sak:02X}"
        data["atqa"] = None if self.atqa is None else f"{self.atqa:04X}"
        if masked:
            data["uid"] = mask_id(self.uid)
            data["id_tag"] = None if self.id_tag is None else mask_id(self.id_tag)
            data["formats"] = {k: mask_id(v) for k, v in self.formats.items()}
        return data


def id_max_len(ocpp_version: str) -> int:
    """The longest id the configured protocol carries: 20 in 1.6 (idTag), 36 in 2.0.1 (idToken)."""
    return ID_TAG_MAX_V16 if ocpp_version == "1.6" else ID_TOKEN_MAX_V201


def masked_cards(status: dict[str, Any]) -> dict[str, Any]:
    """A `CardLog.status()` picture with every id masked beyond its last four characters."""
    last = [{**c, "uid": mask_id(c["uid"]), "id_tag": None if c["id_tag"] is None else mask_id(c["id_tag"]),
             "formats": {k: mask_id(v) for k, v in c["formats"].items()}} for c in status.get("last", [])]
    return {**status, "last": last}


class CardLog:
    """The formatter and the last cards read (bounded), numbered so a watcher asks only for newer ones."""

    def __init__(self, fmt: CardIdFormat | None = None, max_len: int = ID_TAG_MAX_V16) -> None:
        self.format = fmt or CardIdFormat()
        self.max_len = max_len
        self.total = 0
        self._cards: deque[CardSeen] = deque(maxlen=CARD_LOG_MAX)

    def record(self, card: CardRead, wall: float) -> CardSeen:
        """Format a card read with the configured format and keep it; `id_tag` None when refused."""
        self.total += 1
        id_tag: str | None
        refused = None
        try:
            id_tag = format_id(self.format, card.uid, self.max_len)
        except CardIdTooLong as err:
            id_tag, refused = None, f"the configured format makes {err}"
        seen = CardSeen(self.total, wall, card.reader, card.technology, card.uid.hex().upper(), len(card.uid),
                        card.sak, card.atqa, card.card_type, id_tag, self.format.token_type_of(card.technology),
                        refused, {"configured": self.format.id_of(card.uid), **all_formats(card.uid)})
        self._cards.append(seen)
        return seen

    def since(self, seq: int = 0) -> list[CardSeen]:
        """The kept cards numbered above seq, oldest first."""
        return [c for c in self._cards if c.seq > seq]

    def token_type_for(self, id_tag: str) -> str | None:
        """The token type of the last card read as this id (None: no such card kept)."""
        for card in reversed(self._cards):
            if card.id_tag == id_tag:
                return card.token_type
        return None

    def status(self, *, masked: bool = False) -> dict[str, Any]:
        """The format and the last cards, for `evsectl status --json` and the bundle."""
        return {"format": self.format.describe(), "max_len": self.max_len, "total": self.total,
                "last": [c.to_dict(masked=masked) for c in self._cards]}
