"""Clients of the back office's HTTP control API, for tests and scripts in another process (stdlib only)."""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from simulator.httpjson import HttpError, http_json

LOGGER = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 15.0  # above the back office's default call timeout, so /call answers before we give up
POLL_INTERVAL_S = 0.05


class BackOfficeError(RuntimeError):
    """The control API answered with an error (bad request, unknown route) or could not be reached."""


class BackOfficeClient:
    """Synchronous client: BackOfficeClient("http://127.0.0.1:9001")."""

    def __init__(self, base_url: str, timeout: float = HTTP_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        try:
            return http_json(self.base_url, method, path, body, timeout_s=timeout or self.timeout)
        except HttpError as err:
            raise BackOfficeError(f"{method} {path}: HTTP {err.status}: {err}") from err
        except (urllib.error.URLError, OSError) as err:
            raise BackOfficeError(f"{method} {path}: back office control API unreachable: {err}") from err

    def status(self) -> dict[str, Any]:
        """Ports, connected charge points, counters, transactions."""
        result: dict[str, Any] = self._request("GET", "/status")
        return result

    def call(
        self,
        cp_id: str,
        action: str,
        payload: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        validate: bool = True,
    ) -> dict[str, Any]:
        """Send a CS->CP call; {"status": "result"|"error"|"timeout"|"not_connected", ...}."""
        body: dict[str, Any] = {
            "cp_id": cp_id,
            "action": action,
            "payload": payload or {},
            "validate": validate,
        }
        if timeout is not None:
            body["timeout"] = timeout
        http_timeout = max(self.timeout, (timeout or 0) + 5.0)
        result: dict[str, Any] = self._request("POST", "/call", body, timeout=http_timeout)
        return result

    def refuse(self, seconds: float, mode: str = "close") -> None:
        """Drop every connection and refuse new ones for a while."""
        self._request("POST", "/refuse", {"seconds": seconds, "mode": mode})

    def drop(self, cp_id: str, abrupt: bool = False) -> bool:
        """Close a charge point's websocket; False when it was not connected."""
        return bool(self._request("POST", "/drop", {"cp_id": cp_id, "abrupt": abrupt})["dropped"])

    def offline(self) -> None:
        """Close every connection and stop listening."""
        self._request("POST", "/offline", {})

    def online(self) -> None:
        """Listen again."""
        self._request("POST", "/online", {})

    def set_id_tags(self, tags: dict[str, str]) -> None:
        """Set id tag statuses ({tag: Accepted|Blocked|Expired|Invalid|ConcurrentTx})."""
        self._request("POST", "/id_tags", tags)

    def set_boot_status(self, status: str, pending_boots: int | None = None) -> None:
        """Answer later BootNotifications with this status (after pending_boots Pending answers)."""
        body: dict[str, Any] = {"status": status}
        if pending_boots is not None:
            body["pending_boots"] = pending_boots
        self._request("POST", "/boot_status", body)

    def reject_next(self, action: str, n: int = 1, error_code: str = "InternalError") -> None:
        """Answer the next n CALLs of this action with a CALLERROR."""
        self._request("POST", "/reject_next", {"action": action, "n": n, "error_code": error_code})

    def clear(self) -> None:
        """Forget recorded messages and violations."""
        self._request("POST", "/clear", {})

    def messages(
        self, cp_id: str | None = None, action: str | None = None, direction: str | None = "in"
    ) -> list[dict[str, Any]]:
        """Recorded CALLs with their answers; direction "in", "out" or None (both)."""
        query = {"direction": direction or "any"}
        if cp_id is not None:
            query["cp_id"] = cp_id
        if action is not None:
            query["action"] = action
        result: list[dict[str, Any]] = self._request("GET", "/messages?" + urlencode(query))
        return result

    def violations(self) -> list[dict[str, Any]]:
        """Every recorded protocol or schema violation."""
        result: list[dict[str, Any]] = self._request("GET", "/violations")
        return result

    def frames(self, cp_id: str | None = None) -> list[dict[str, Any]]:
        """The raw frame log."""
        result: list[dict[str, Any]] = self._request(
            "GET", "/frames?" + urlencode({"cp_id": cp_id} if cp_id else {})
        )
        return result

    def ledger(self, cp_id: str, require_ended: bool = True) -> dict[str, Any]:
        """A 2.0.1 station's TransactionEvents per transactionId and the ledger check's problems."""
        query = {"cp_id": cp_id, "require_ended": "1" if require_ended else "0"}
        result: dict[str, Any] = self._request("GET", "/ledger?" + urlencode(query))
        return result

    def connected(self, cp_id: str) -> bool:
        """True while the charge point is connected."""
        return cp_id in self.status()["connected"]

    def wait_for(
        self,
        what: str | Callable[[], Any],
        timeout: float = 5.0,
        *,
        cp_id: str | None = None,
        count: int = 1,
        direction: str = "in",
    ) -> Any:
        """Poll until the count-th answered CALL of an action exists (returned) or a predicate is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            if callable(what):
                value = what()
                if value:
                    return value
            else:
                found = [m for m in self.messages(cp_id, what, direction) if m["response"] is not None]
                if len(found) >= count:
                    return found[count - 1]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what!r} (cp_id={cp_id})")
            time.sleep(POLL_INTERVAL_S)


class AsyncBackOfficeClient:
    """The same API for asyncio code: each request runs in a worker thread."""

    def __init__(self, base_url: str, timeout: float = HTTP_TIMEOUT_S) -> None:
        self.sync = BackOfficeClient(base_url, timeout)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.sync, name)
        if not callable(method):
            return method

        async def run(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return run

    async def wait_for(
        self, what: str | Callable[[], Any], timeout: float = 5.0, *, cp_id: str | None = None, count: int = 1
    ) -> Any:
        """Like BackOfficeClient.wait_for, without blocking the event loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if callable(what):
                value = what()
                if asyncio.iscoroutine(value):
                    value = await value
                if value:
                    return value
            else:
                found = [
                    m
                    for m in await asyncio.to_thread(self.sync.messages, cp_id, what)
                    if m["response"] is not None
                ]
                if len(found) >= count:
                    return found[count - 1]
            if loop.time() >= deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what!r} (cp_id={cp_id})")
            await asyncio.sleep(POLL_INTERVAL_S)
