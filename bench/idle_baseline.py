"""Baseline process of the idle figure: imports what the agent imports, then idles in an asyncio loop."""

from __future__ import annotations

import asyncio
import sqlite3  # noqa: F401 - the import is the point: its memory counts in the baseline

import gpiozero  # noqa: F401
import ocpp.v16
import ocpp.v201  # noqa: F401
import pymodbus.client  # noqa: F401
import serial  # noqa: F401
import websockets.asyncio.client  # noqa: F401


async def _idle() -> None:
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_idle())
