"""Every connection of ``dxassist serve`` sends its writes at once (TCP_NODELAY), also on the listening
socket uvicorn's supervisor hands to its workers, whose protocol number is 0 (asyncio then sets nothing,
and each answer waited 40 ms for the client's delayed acknowledgement); and it reads its socket 1 MiB at a
time, not 256 KiB (an upload crosses the event loop once per read)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from inference.api._http import READ_BYTES, BoundedHttpToolsProtocol


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _served_connection(listener: socket.socket) -> tuple[int, int]:
    """TCP_NODELAY of a connection the protocol served, and how many bytes it reads at a time."""

    async def main() -> tuple[int, int]:
        config = Config(app=_ok, http=BoundedHttpToolsProtocol, lifespan="off", log_config=None)
        config.load()
        state = ServerState()
        made: list[BoundedHttpToolsProtocol] = []

        def protocol() -> BoundedHttpToolsProtocol:
            made.append(BoundedHttpToolsProtocol(config=config, server_state=state, app_state={}))
            return made[-1]

        server = await asyncio.get_running_loop().create_server(protocol, sock=listener)
        try:
            reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            writer.write(b"GET / HTTP/1.1\r\nHost: dxassist\r\n\r\n")
            await writer.drain()
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            served = made[0].transport.get_extra_info("socket")
            value = int(served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            read_size = int(made[0].transport.max_size)  # type: ignore[attr-defined]
            writer.close()
            return value, read_size
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def test_a_listener_without_a_protocol_number_still_gets_nodelay_connections() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # as uvicorn's supervisor binds it
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    assert listener.proto == 0
    assert _served_connection(listener)[0] != 0


def test_a_tcp_listener_keeps_nodelay_connections_that_read_1_mib_at_a_time() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    nodelay, read_size = _served_connection(listener)
    assert nodelay != 0
    assert read_size == READ_BYTES == 1024 * 1024
