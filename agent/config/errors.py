"""How a config problem is reported: ConfigError, key paths as "connectors[0].meter", TOML value names."""

from __future__ import annotations

from agent.errors import AgentError

Path_ = tuple[str | int, ...]  # a key path: ("connectors", 0, "meter", "driver")


class ConfigError(AgentError):
    """The config file is unreadable or invalid; each problem reads FILE:LINE: path: reason."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


def format_path(path: Path_) -> str:
    """("connectors", 0, "meter") -> "connectors[0].meter"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def type_name(value: object) -> str:
    """TOML-ish name of a parsed value's type, for messages."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return type(value).__name__
