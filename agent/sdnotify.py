"""systemd notify protocol: READY=1, WATCHDOG=1 and STATUS= over the NOTIFY_SOCKET datagram socket."""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send one notify message; False when not under systemd or the socket is gone."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            # MSG_DONTWAIT: a blocking send would stall the event loop when nothing reads the socket
            sock.sendto(message.encode(), socket.MSG_DONTWAIT, address)
        return True
    except OSError:
        return False


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd asked for, or None when the watchdog is off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None
