"""The event loop of each `dxassist serve --workers N` worker accepts one waiting connection per wake-up,
so a burst of connections on the shared socket is not taken whole by the first worker that wakes."""

from __future__ import annotations

import asyncio
import socket

from inference.api._workers import FairAcceptLoop


def _accepted_in_one_tick(loop_class: type[asyncio.AbstractEventLoop], waiting: int) -> int:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    clients = [socket.create_connection(listener.getsockname()) for _ in range(waiting)]
    loop = loop_class()
    made: list[asyncio.Protocol] = []

    def protocol() -> asyncio.Protocol:
        made.append(asyncio.Protocol())
        return made[-1]

    try:
        listener.setblocking(False)
        # What the loop runs when the listening socket is readable (asyncio's accept handler).
        loop._accept_connection(protocol, listener, None, None, 100)  # type: ignore[attr-defined]
        loop.run_until_complete(asyncio.sleep(0.05))  # let the accepted transports start
        return len(made)
    finally:
        loop.close()
        for client in clients:
            client.close()
        listener.close()


def test_one_connection_per_wakeup() -> None:
    assert _accepted_in_one_tick(FairAcceptLoop, waiting=5) == 1


def test_asyncio_alone_takes_the_whole_burst() -> None:
    # What the workers did before: the first to wake accepted every waiting connection.
    assert _accepted_in_one_tick(asyncio.SelectorEventLoop, waiting=5) == 5
