"""Every connection of ``dxassist serve`` sends its writes at once (TCP_NODELAY), also on the listening
socket uvicorn's supervisor hands to its workers, whose protocol number is 0 (asyncio then sets nothing,
and each answer waited 40 ms for the client's delayed acknowledgement)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from inference.api._http import BoundedHttpToolsProtocol


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _nodelay_of_a_served_connection(listener: socket.socket) -> int:
    async def main() -> int:
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
            writer.close()
            return value
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def test_a_listener_without_a_protocol_number_still_gets_nodelay_connections() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # as uvicorn's supervisor binds it
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    assert listener.proto == 0
    assert _nodelay_of_a_served_connection(listener) != 0


def test_a_tcp_listener_keeps_nodelay_connections() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    assert _nodelay_of_a_served_connection(listener) != 0
