"""The TOML line scanner: where each table and key path is defined (tomllib gives no positions)."""

from __future__ import annotations

import re
import tomllib

from agent.config.errors import Path_

BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(text: str, pos: int) -> tuple[list[str], int] | None:
    """Parse a dotted key at text[pos:]; return (parts, position after it) or None if there is none."""
    parts: list[str] = []
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos >= len(text):
            return None
        ch = text[pos]
        if ch in "\"'":
            end = pos + 1
            while end < len(text) and text[end] != ch:
                end += 2 if ch == '"' and text[end] == "\\" else 1
            if end >= len(text):
                return None
            raw = text[pos + 1 : end]
            parts.append(_unescape(raw) if ch == '"' else raw)
            pos = end + 1
        else:
            match = BARE_KEY_RE.match(text, pos)
            if match is None:
                return None
            parts.append(match.group())
            pos = match.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return parts, pos


def _unescape(raw: str) -> str:
    """Unescape a TOML basic-string key (good enough for keys; values are never read from here)."""
    try:
        parsed = tomllib.loads(f'k = "{raw}"')["k"]
    except tomllib.TOMLDecodeError:
        return raw
    return str(parsed)


def _open_multiline(text: str) -> str | None:
    """Scan a value for strings; return the delimiter of a multi-line string left open at line end."""
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch == "#":
            return None
        for delim in ('"""', "'''"):
            if text.startswith(delim, pos):
                end = _find_close(text, pos + 3, delim)
                if end < 0:
                    return delim
                pos = end + 3
                break
        else:
            if ch in "\"'":
                end = pos + 1
                while end < len(text) and text[end] != ch:
                    end += 2 if ch == '"' and text[end] == "\\" else 1
                pos = end + 1
            else:
                pos += 1
    return None


def _find_close(text: str, pos: int, delim: str) -> int:
    """Index of the closing multi-line delimiter in text[pos:], or -1."""
    while True:
        idx = text.find(delim, pos)
        if idx < 0:
            return -1
        if delim == '"""':
            backslashes = len(text[:idx]) - len(text[:idx].rstrip("\\"))
            if backslashes % 2:
                pos = idx + 1
                continue
        return idx


class LineIndex:
    """Maps key paths to the 1-based line that defines them, tracking [table] and [[array]] indices."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path_, int] = {}
        self.arrays: dict[Path_, int] = {}
        self.last_line = max(1, text.count("\n") + 1)
        self._scan(text)

    def _resolve(self, names: list[str]) -> Path_:
        """Insert the current index after each name that is an array of tables."""
        path: Path_ = ()
        for name in names:
            path = (*path, name)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def _scan(self, text: str) -> None:
        table: Path_ = ()
        open_delim: str | None = None
        for lineno, line in enumerate(text.splitlines(), start=1):
            if open_delim is not None:
                end = _find_close(line, 0, open_delim)
                if end < 0:
                    continue
                rest = line[end + 3 :]
                open_delim = _open_multiline(rest)
                continue
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("[["):
                parsed = _parse_key(stripped, 2)
                if parsed is not None:
                    parent = self._resolve(parsed[0][:-1])
                    array = (*parent, parsed[0][-1])
                    self.arrays[array] = self.arrays.get(array, 0) + 1
                    table = (*array, self.arrays[array] - 1)
                    self.lines.setdefault(array, lineno)
                    self.lines[table] = lineno
                continue
            if stripped.startswith("["):
                parsed = _parse_key(stripped, 1)
                if parsed is not None:
                    table = self._resolve(parsed[0])
                    self.lines.setdefault(table, lineno)
                continue
            parsed = _parse_key(stripped, 0)
            if parsed is None or parsed[1] >= len(stripped) or stripped[parsed[1]] != "=":
                continue
            parts = parsed[0]
            for depth in range(1, len(parts) + 1):
                self.lines.setdefault((*table, *parts[:depth]), lineno)
            open_delim = _open_multiline(stripped[parsed[1] + 1 :])

    def line_of(self, path: Path_) -> int | None:
        """The line of the path, else of its closest defined parent, else None."""
        for depth in range(len(path), 0, -1):
            line = self.lines.get(path[:depth])
            if line is not None:
                return line
        return None
