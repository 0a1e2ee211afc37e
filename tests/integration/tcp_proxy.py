"""A TCP proxy between the agent and the back office that can misbehave the way real networks do."""

from __future__ import annotations

import asyncio
import contextlib
import time

CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:port to a target port. `frozen`: nothing passes either way and nothing closes (a
    half-open connection: a NAT that forgot it, a cable pulled on the far side). `drop_after_handshake`: the
    websocket handshake completes, then the connection is closed at once (a back office that rejects late)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = False
        self.drop_after_handshake = False
        self.connections: list[float] = []  # monotonic time of every accepted connection
        self.closed: list[float] = []  # monotonic time at which the agent's side of a connection ended
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        """The port the agent connects to."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def stop(self) -> None:
        """Close everything."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(time.monotonic())
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        down = asyncio.create_task(self._pump(up_reader, writer, upstream=False))
        up = asyncio.create_task(self._pump(reader, up_writer, upstream=True))
        self._tasks.update((down, up))
        await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        for task in (down, up):
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)
        self._tasks.difference_update((down, up))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool) -> None:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                if upstream:
                    self.closed.append(time.monotonic())
                return
            while self.frozen:
                await asyncio.sleep(0.02)
            writer.write(data)
            await writer.drain()
            if not upstream and self.drop_after_handshake and b" 101 " in data:
                await asyncio.sleep(0.05)
                return
