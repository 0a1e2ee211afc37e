"""Baseline process of the idle figure: imports what the running agent imported, then idles in asyncio.

Usage: python -m bench.idle_baseline MODULES_FILE. The file is the agent's own `sys.modules` in import order
(written by `bench.launch` on SIGUSR1). Everything but the project's own packages is imported here, in the
same order: the baseline is the interpreter and every library and standard module the agent uses, without
the agent's code and data. Prints one JSON line {"imported": n, "failed": [...]} when ready.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys

PROJECT = ("agent", "drivers", "simulator", "bench", "__main__", "__mp_main__")


def baseline_modules(names: list[str]) -> list[str]:
    """The agent's modules minus the project's own packages (and the launcher)."""
    return [n for n in names if n and n.split(".", 1)[0] not in PROJECT]


def import_all(names: list[str]) -> tuple[int, list[str]]:
    """Import each name; returns (imported, failed names)."""
    imported, failed = 0, []
    for name in names:
        if name in sys.modules:
            imported += 1
            continue
        try:
            importlib.import_module(name)
            imported += 1
        except Exception:
            failed.append(name)
    return imported, failed


async def _idle(names: list[str]) -> None:
    imported, failed = import_all(baseline_modules(names))
    print(json.dumps({"imported": imported, "failed": failed[:20], "failed_count": len(failed)}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        modules = f.read().split()
    asyncio.run(_idle(modules))
