"""drivers/http.py against raw sockets: framing, size bounds and timeouts of the device HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from drivers.http import MAX_BODY_BYTES, MAX_HEADER_BYTES, HttpClient, HttpFault, HttpTimeout

Serve = Callable[[bytes], Awaitable[HttpClient]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(answer: bytes) -> HttpClient:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return HttpClient("dev", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", 0.5)

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_chunked_body(serve: Serve) -> None:
    client = await serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain; charset=utf-8\r\n"
                         b"\r\n5\r\nOCMF|\r\n3;x=1\r\nabc\r\n0\r\n\r\n")
    response = await client.request("GET", "/v1/ocmf")
    assert (response.status, response.body, response.content_type) == (200, b"OCMF|abc", "text/plain")


async def test_body_to_end_of_connection(serve: Serve) -> None:
    client = await serve(b"HTTP/1.0 200 OK\r\n\r\n{\"a\": 1}")
    assert (await client.request("GET", "/x")).json("dev") == {"a": 1}


@pytest.mark.parametrize("answer, kind", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "framing"),
    (b"HTTP/1.1 2x0 OK\r\n\r\n", "framing"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "framing"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "framing"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "framing"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n\r\n", "oversized"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 2000 + b"\r\n", "oversized"),
    (f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode(), "oversized"),
    (b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * (MAX_BODY_BYTES + 1), "oversized"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "io_error"),  # closed mid-body
])
async def test_refused_answers_are_counted(serve: Serve,
                                           answer: bytes, kind: str) -> None:
    client = await serve(answer)
    with pytest.raises(HttpFault) as err:
        await client.request("GET", "/x")
    assert err.value.kind == kind
    assert client.error_counts()[kind] == 1


async def test_silent_server_times_out() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    client = HttpClient("dev", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", 0.2)
    try:
        with pytest.raises(HttpTimeout):
            await client.request("GET", "/x")
        assert client.error_counts()["timeout"] == 1
    finally:
        server.close()


async def test_nobody_listening_is_an_io_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = HttpClient("dev", f"http://127.0.0.1:{port}", 0.5)
    with pytest.raises(HttpFault) as err:
        await client.request("GET", "/x")
    assert err.value.kind == "io_error"


def test_query_is_percent_encoded() -> None:
    assert HttpClient.query("/v1/ocmf", transactionId="a b&c=d/é") == "/v1/ocmf?transactionId=a%20b%26c%3Dd%2F%C3%A9"
