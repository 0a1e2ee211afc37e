"""OCPP 2.0.1 N09/N10 customer information: what the station holds about an idToken, as the text of
NotifyCustomerInformation parts, and clearing it.

The station keeps three things about a token: its local authorization list entry (the back office's own list,
never cleared here: the back office manages it with SendLocalList), its authorization cache entry, and the
transactions it started. It keeps no customer identifiers and no customer certificates, so a request naming
only those is answered with a report saying nothing is held.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.clock import iso
from agent.store import Store

DATA_MAX_CHARS = 512  # NotifyCustomerInformationRequest.data maxLength
TRANSACTIONS_MAX = 100  # transactions reported per request: a report stays a few dozen messages at most
PARTS_MAX = 64  # a hard bound on the messages of one report, whatever the data holds


def token_report(store: Store, id_token: str, *, list_enabled: bool, cache_enabled: bool) -> list[str]:
    """One line per thing the station holds about an idToken (empty: nothing held)."""
    lines: list[str] = []
    entry = store.local_list_get(id_token) if list_enabled else None
    if entry is not None:
        lines.append(f"local list: status={entry.status} expiry={entry.expiry_date or '-'} "
                     f"group={entry.parent_id_tag or '-'}")
    cached = store.cache_get(id_token) if cache_enabled else None
    if cached is not None:
        lines.append(f"authorization cache: status={cached.status} expiry={cached.expiry_date or '-'} "
                     f"group={cached.parent_id_tag or '-'}")
    for row in store.transactions_of_id(id_token, TRANSACTIONS_MAX):
        stop = iso(row.stop_wall) if row.stop_wall is not None else "running"
        energy = (row.meter_stop_wh if row.meter_stop_wh is not None else row.last_energy_wh) - row.meter_start_wh
        lines.append(f"transaction {row.station_tx_id or row.tx_local_id}: start={iso(row.start_wall)} "
                     f"stop={stop} energy_wh={energy:.0f}")
    return lines


def clear_token(store: Store, id_token: str) -> list[str]:
    """N10: erase the cache entry and the id in delivered transactions; what was erased, one line each."""
    done: list[str] = []
    if store.cache_forget(id_token):
        done.append("authorization cache entry cleared")
    erased = store.forget_id_tag(id_token)
    if erased:
        done.append(f"id erased from {erased} finished transaction(s)")
    return done


def chunks(lines: list[str], limit: int = DATA_MAX_CHARS, max_parts: int = PARTS_MAX) -> Iterator[str]:
    """The report text in pieces of at most `limit` characters, split at line ends where a line fits."""
    part = ""
    parts = 0
    for line in lines:
        line = line[:limit]  # one line never needs more than a whole message
        candidate = f"{part}\n{line}" if part else line
        if len(candidate) <= limit:
            part = candidate
            continue
        yield part
        parts += 1
        if parts >= max_parts:
            return
        part = line
    if part or parts == 0:
        yield part


def notify_parts(request_id: int, lines: list[str], generated_at: float) -> list[dict[str, object]]:
    """NotifyCustomerInformation payloads: seqNo from 0, tbc on every part but the last."""
    texts = list(chunks(lines or ["no information held"]))
    stamp = iso(generated_at)
    return [{"data": text, "tbc": n < len(texts) - 1, "seqNo": n, "generatedAt": stamp, "requestId": request_id}
            for n, text in enumerate(texts)]
