"""Every regular expression that reads outside input (frames, config, serial lines) runs in linear time.

Each pattern in agent/ and drivers/ is found on the source (a new one is covered without editing this
file) and fed 1 MB of adversarial text: long runs of the characters and words it looks for. The time is
compared with a plain `str.find` over the same text: a linear pattern stays within a constant factor
(a few thousand at most, from the per-match work of `sub`); a backtracking one needs minutes (ratio 1e7+).
"""

from __future__ import annotations

import ast
import contextlib
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest
from ocpp.charge_point import camel_to_snake_case

from agent.redact import clip, redact

ROOT = Path(__file__).resolve().parents[2]
SIZE = 1 << 20  # 1 MB of adversarial text
RATIO_LIMIT = 25_000  # generous: linear patterns measured at most ~4,000 here; a quadratic one is 1e7+
HANG_GUARD_S = 60  # not the measure: only stops a regression from hanging the test run for an hour
_RE_FUNCS = {"compile", "match", "fullmatch", "search", "sub", "subn", "findall", "finditer", "split"}


def _flags(node: ast.expr | None) -> int:
    """The value of a flags argument such as re.IGNORECASE | re.MULTILINE."""
    if node is None:
        return 0
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _flags(node.left) | _flags(node.right)
    if isinstance(node, ast.Attribute):
        return int(getattr(re, node.attr))
    raise AssertionError(f"regex flags must be re.X constants: {ast.dump(node)}")


def source_patterns() -> list[tuple[str, re.Pattern[str]]]:
    """Every regex literal used through the `re` module in agent/ and drivers/, named file:line."""
    found: list[tuple[str, re.Pattern[str]]] = []
    for path in sorted([*ROOT.joinpath("agent").rglob("*.py"), *ROOT.joinpath("drivers").rglob("*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                    and node.func.attr in _RE_FUNCS):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            arg = node.args[0] if node.args else None
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), \
                f"{where}: a regex must be a literal to be checked for linear time"
            flags_node = node.args[1] if node.func.attr == "compile" and len(node.args) > 1 else None
            for kw in node.keywords:
                if kw.arg == "flags":
                    flags_node = kw.value
            found.append((where, re.compile(arg.value, _flags(flags_node))))
    return found


def adversarial_texts(pattern: str) -> Iterator[tuple[str, str]]:
    """1 MB texts built from runs of what the pattern looks for."""
    yield "letters", "a" * SIZE
    yield "digits", "1" * SIZE
    yield "spaces", " " * SIZE
    yield "alnum", "aZ09" * (SIZE // 4)
    for token in ("://", "://a:", "a://b:", "://a:b@", ":", "=", ",", "'", '"', "@", "/"):
        yield f"repeat {token!r}", token * (SIZE // len(token))
    words = sorted(set(re.findall(r"[A-Za-z]{3,}", pattern)))
    for word in words:
        yield f"repeat {word}", word * (SIZE // len(word))
        yield f"{word}+letters", word + "a" * SIZE
        yield f"{word}+spaces", word + " " * SIZE
        yield f"{word}+digits", word + "1" * SIZE
        yield f"{word} separators", (word + '" : "') * (SIZE // (len(word) + 5))


@contextlib.contextmanager
def hang_guard(what: str) -> Iterator[None]:
    """Fail instead of hanging when a regression makes a pattern quadratic (re checks signals)."""
    def expire(signum: int, frame: FrameType | None) -> None:
        raise AssertionError(f"{what}: still running after {HANG_GUARD_S} s on 1 MB: not linear")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(HANG_GUARD_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ratio_to_find(text: str, work: Callable[[], object], what: str) -> float:
    """Time of work over the time of text.find (best of a few, to be fair on a busy machine)."""
    baseline = min(_time(lambda: text.find("\x00")) for _ in range(5))
    baseline = max(baseline, 1e-6)  # a timer tick: never divide by zero
    with hang_guard(what):
        ratio = _time(work) / baseline
        for _ in range(2):  # another process may have taken the CPU: measure again before failing
            if ratio <= RATIO_LIMIT:
                break
            ratio = min(ratio, _time(work) / baseline)
    return ratio


def test_every_regex_is_a_checked_literal() -> None:
    """The scan finds the known patterns (so the linear-time test below is not vacuous)."""
    names = [where for where, _ in source_patterns()]
    assert any(n.startswith("agent/redact.py") for n in names)
    assert any(n.startswith("agent/config/") for n in names)


@pytest.mark.parametrize(("where", "pattern"), source_patterns(), ids=lambda v: v if isinstance(v, str) else "")
def test_regex_linear_on_1mb_adversarial_text(where: str, pattern: re.Pattern[str]) -> None:
    """sub (a search from every position) and fullmatch stay within a constant factor of str.find."""
    worst = 0.0
    for name, text in adversarial_texts(pattern.pattern):
        worst = max(worst, ratio_to_find(text, lambda t=text: pattern.sub("", t), f"{where} sub {name}"))
        worst = max(worst, ratio_to_find(text, lambda t=text: pattern.fullmatch(t), f"{where} fullmatch {name}"))
        assert worst <= RATIO_LIMIT, f"{where} on {name}: {worst:.0f} x str.find"


REDACT_TEXTS = {
    "letters": "a" * SIZE,
    "scheme run": "ftp" * (SIZE // 3) + "://",
    "url heads": "a://b:" * (SIZE // 6),
    "urls with passwords": "ftp://a:b@h/" * (SIZE // 12),
    "key then spaces": "AuthorizationKey" + " " * SIZE,
    "repeated keys": "AuthorizationKey:" * (SIZE // 17),
    "repeated basic": "Authorization: Basic " * (SIZE // 21),
    "open json values": '"key":"AuthorizationKey","value":"' * (SIZE // 34),
}


@pytest.mark.parametrize("name", sorted(REDACT_TEXTS))
def test_redaction_linear_on_1mb_adversarial_text(name: str) -> None:
    """The whole redaction of a log line (every pattern, every substitution) on 1 MB."""
    text = REDACT_TEXTS[name]
    ratio = ratio_to_find(text, lambda: redact(text), f"redact {name}")
    assert ratio <= RATIO_LIMIT, f"redact on {name}: {ratio:.0f} x str.find"


def test_redaction_of_a_64kb_letter_payload_is_fast() -> None:
    """The reported case: a CALL whose payload holds 64 KB of letters (13-20 s before the fix)."""
    frame = '[2,"1","DataTransfer",{"vendorId":"x","data":"' + "a" * 65536 + '"}]'
    ratio = ratio_to_find(frame, lambda: redact(frame), "redact 64 KB frame")
    assert ratio <= RATIO_LIMIT
    assert clip(frame).endswith(f"[clipped: {len(frame)} chars in all]")


def test_library_key_conversion_linear() -> None:
    """The ocpp library turns every payload key to snake_case with two regexes: linear as well."""
    for name, key in (("camel run", "aB" * (SIZE // 2)), ("upper run", "A" * SIZE), ("word run", "Abc" * (SIZE // 3))):
        ratio = ratio_to_find(key, lambda k=key: camel_to_snake_case({k: 1}), f"camel_to_snake_case {name}")
        assert ratio <= RATIO_LIMIT * 4, f"camel_to_snake_case on {name}: {ratio:.0f} x str.find"
