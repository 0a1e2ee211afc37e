"""The back office's test controls over HTTP/JSON (the simulator's shared stdlib server).

`simulator/backoffice_client.py` is its client; every route maps onto one BackOffice method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simulator.httpjson import JsonHttpServer

if TYPE_CHECKING:
    from simulator.backoffice.server import BackOffice


class ControlApi:
    """The HTTP control API of one BackOffice."""

    def __init__(self, office: BackOffice) -> None:
        self.office = office
        self._server: JsonHttpServer | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve the routes; returns the bound port."""
        server = JsonHttpServer()
        for method, path, handler in (
            ("GET", "/status", self._h_status),
            ("GET", "/messages", self._h_messages),
            ("GET", "/violations", self._h_violations),
            ("GET", "/frames", self._h_frames),
            ("GET", "/ledger", self._h_ledger),
            ("POST", "/call", self._h_call),
            ("POST", "/raw", self._h_raw),
            ("POST", "/refuse", self._h_refuse),
            ("POST", "/drop", self._h_drop),
            ("POST", "/offline", self._h_offline),
            ("POST", "/online", self._h_online),
            ("POST", "/id_tags", self._h_id_tags),
            ("POST", "/boot_status", self._h_boot_status),
            ("POST", "/reject_next", self._h_reject_next),
            ("POST", "/clear", self._h_clear),
        ):
            server.route(method, path, handler)
        control_port = await server.start(host, port)
        self._server = server
        return control_port

    async def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def _h_status(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return self.office.status()

    async def _h_messages(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        direction = query.get("direction", "in")
        return self.office.messages(
            query.get("cp_id"), query.get("action"), None if direction == "any" else direction
        )

    async def _h_violations(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return self.office.violations

    async def _h_frames(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return self.office.frames(query.get("cp_id"))

    async def _h_ledger(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return self.office.ledger(query["cp_id"], require_ended=query.get("require_ended", "1") != "0")

    async def _h_call(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return await self.office.call(
            body["cp_id"],
            body["action"],
            body.get("payload", {}),
            timeout=body.get("timeout"),
            validate=body.get("validate", True),
        )

    async def _h_raw(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return await self.office.send_raw(
            body["cp_id"],
            body["text"],
            unique_id=body.get("unique_id"),
            action=body.get("action", ""),
            timeout=body.get("timeout"),
        )

    async def _h_refuse(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        await self.office.refuse_connections(float(body["seconds"]), mode=body.get("mode", "close"))
        return {"ok": True}

    async def _h_drop(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return {"dropped": await self.office.drop(body["cp_id"], abrupt=bool(body.get("abrupt", False)))}

    async def _h_offline(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        await self.office.go_offline()
        return {"ok": True}

    async def _h_online(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        await self.office.go_online()
        return {"ok": True}

    async def _h_id_tags(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        for tag, status in body.items():
            self.office._check_tag_status(tag, status)  # all or nothing
        for tag, status in body.items():
            self.office.set_id_tag(tag, status)
        return {"ok": True}

    async def _h_boot_status(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        self.office.set_boot_status(body["status"], pending_boots=body.get("pending_boots"))
        return {"ok": True}

    async def _h_reject_next(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        self.office.reject_next(body["action"], int(body.get("n", 1)), body.get("error_code", "InternalError"))
        return {"ok": True}

    async def _h_clear(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        self.office.clear()
        return {"ok": True}
