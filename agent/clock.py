"""Is the system clock synchronized? A Pi has no real-time clock: until NTP (or the back office) sets it,
wall time may be days off, so records keep monotonic time and the boot id beside it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

LOGGER = logging.getLogger(__name__)

TIME_ERROR = 5  # adjtimex() clock state: not synchronized
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")  # written by systemd-timesyncd once synced


def system_clock_synchronized() -> bool:
    """True when the kernel says an NTP daemon has disciplined the clock (or timesyncd says so)."""
    if TIMESYNCD_FLAG.exists():
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex with modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError) as err:
        LOGGER.debug("adjtimex unavailable: %s", err)
        return False
    return bool(0 <= state != TIME_ERROR)


KERNEL_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # a new random id at every kernel boot
BOOT_ID_FILE_ENV = "EVSE_AGENT_BOOT_ID_FILE"  # read another file instead (containers, power-cut tests)


def kernel_boot_id() -> str:
    """The kernel's boot id: it changes only when the system boots (a power cut, a reboot), never when the
    process restarts. Empty when unknown (no /proc), which counts as "a new boot"."""
    path = Path(os.environ.get(BOOT_ID_FILE_ENV) or KERNEL_BOOT_ID)
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()[:64]
    except OSError as err:
        LOGGER.warning("kernel boot id unknown (%s): a power cut cannot be told from a restart", err)
        return ""


def iso(ts: float) -> str:
    """Wall seconds as an OCPP date-time: UTC, milliseconds (truncated), 'Z' suffix."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str | None) -> float | None:
    """An OCPP date-time ('Z' or an offset) as wall seconds; None for None or an empty string."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
