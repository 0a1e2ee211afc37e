"""File transfers for firmware downloads and diagnostics uploads: HTTP(S) and FTP(S), stdlib only.

`download` and `upload` block: `transfer_with_retries` runs them in a worker thread (`asyncio.to_thread`) so
the event loop, and with it the charging sessions, never wait on a slow server. It is the one retry rule for
every transfer the back office asks for (firmware, diagnostics, logs).
"""

from __future__ import annotations

import asyncio
import ftplib
import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from agent.redact import redact as redact_text

LOGGER = logging.getLogger(__name__)

TIMEOUT_S = 60.0
CHUNK = 64 * 1024
SCHEMES = ("http", "https", "ftp", "ftps")

T = TypeVar("T")


class TransferError(Exception):
    """A download or upload failed; the message says where and why (never the password)."""


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    return redact_text(url)


def _opener() -> urllib.request.OpenerDirector:
    # Never through an environment proxy: the charger talks to the location it was given.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _ftp(url: str, timeout_s: float) -> tuple[ftplib.FTP, str]:
    parts = urlsplit(url)
    ftp: ftplib.FTP
    if parts.scheme == "ftps":
        ftp = ftplib.FTP_TLS(timeout=timeout_s, context=ssl.create_default_context())
    else:
        ftp = ftplib.FTP(timeout=timeout_s)
    ftp.connect(parts.hostname or "", parts.port or 21)
    ftp.login(unquote(parts.username or "anonymous"), unquote(parts.password or "anonymous@"))
    if isinstance(ftp, ftplib.FTP_TLS):
        ftp.prot_p()
    return ftp, unquote(parts.path or "/")


def download(url: str, dest: Path, *, max_bytes: int, timeout_s: float = TIMEOUT_S) -> int:
    """Fetch url into dest (atomically); return the size. Raises TransferError."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise TransferError(f"unsupported scheme {scheme!r} in {redact(url)}; supported: {', '.join(SCHEMES)}")
    partial = dest.with_name(dest.name + ".part")
    size = 0
    try:
        with open(partial, "wb") as out:
            if scheme in ("http", "https"):
                with _opener().open(url, timeout=timeout_s) as response:
                    while chunk := response.read(CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise TransferError(f"{redact(url)} is larger than {max_bytes} bytes")
                        out.write(chunk)
            else:
                ftp, path = _ftp(url, timeout_s)
                with ftp:

                    def write(chunk: bytes) -> None:
                        nonlocal size
                        size += len(chunk)
                        if size > max_bytes:
                            raise TransferError(f"{redact(url)} is larger than {max_bytes} bytes")
                        out.write(chunk)

                    ftp.retrbinary(f"RETR {path}", write, blocksize=CHUNK)
        partial.replace(dest)
        return size
    except TransferError:
        partial.unlink(missing_ok=True)
        raise
    except (OSError, urllib.error.URLError, ftplib.Error, EOFError, ValueError) as err:
        partial.unlink(missing_ok=True)
        raise TransferError(f"download from {redact(url)} failed: {err}") from err


def upload(location: str, path: Path, *, timeout_s: float = TIMEOUT_S) -> str:
    """Upload a file into the directory URL `location` (HTTP PUT to location/name, or FTP STOR)."""
    parts = urlsplit(location)
    if parts.scheme not in SCHEMES:
        raise TransferError(f"unsupported scheme {parts.scheme!r} in {redact(location)}")
    target = location.rstrip("/") + "/" + path.name
    try:
        if parts.scheme in ("http", "https"):
            data = path.read_bytes()
            request = urllib.request.Request(target, data=data, method="PUT",
                                             headers={"Content-Type": "application/gzip"})
            with _opener().open(request, timeout=timeout_s) as response:
                if response.status >= 300:
                    raise TransferError(f"upload to {redact(target)}: HTTP {response.status}")
        else:
            ftp, directory = _ftp(location, timeout_s)
            with ftp, open(path, "rb") as fh:
                if directory not in ("", "/"):
                    ftp.cwd(directory)
                ftp.storbinary(f"STOR {path.name}", fh, blocksize=CHUNK)
        return target
    except TransferError:
        raise
    except (OSError, urllib.error.URLError, ftplib.Error, EOFError, ValueError) as err:
        raise TransferError(f"upload to {redact(target)} failed: {err}") from err


async def transfer_with_retries(what: str, transfer: Callable[[], T], retries: int,
                                retry_interval_s: float) -> T | None:
    """Run a blocking transfer in a worker thread, retried `retries` times on TransferError; None if all failed."""
    for attempt in range(retries + 1):
        try:
            return await asyncio.to_thread(transfer)
        except TransferError as err:
            LOGGER.warning("%s attempt %d/%d failed: %s", what, attempt + 1, retries + 1, err)
            if attempt < retries:
                await asyncio.sleep(retry_interval_s)
    return None
