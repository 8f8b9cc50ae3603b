"""``DXASSIST_DIMSE_MAX_ASSOCIATIONS_PER_HOST`` over IPv6: a peer is its /64, an IPv4-mapped one its IPv4.

An IPv6 host picks addresses in its /64 at will (privacy addresses, SLAAC): counted by exact address,
one host could open a connection from each of them and take every slot of the listener, which the
per-host share exists to prevent. The sandbox has ``::1`` as its only loopback IPv6 address, so the
grouping is shown on the listener's own slot counter with documentation addresses (2001:db8::/32), and
a listener bound to ``::`` (dual stack) is shown counting real connections from ``::1`` and from IPv4
peers, which it sees as IPv4-mapped addresses.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_models
from _pacs_harness import LISTENER_AET, TEST_AET, Listener, echo, free_port, require_tools, wait_until

from inference.dimse._connections import _Slots

pytestmark = pytest.mark.integration

PER_HOST = 3
A_ASSOCIATE_RQ = 0x01


def _stalled(family: socket.AddressFamily, source: str, target: str, port: int) -> socket.socket:
    """A connection from ``source`` that sends half a PDU header and then nothing."""
    connection = socket.socket(family, socket.SOCK_STREAM)
    connection.bind((source, 0))
    connection.connect((target, port))
    connection.sendall(bytes([A_ASSOCIATE_RQ, 0, 0]))
    return connection


def _still_open(connection: socket.socket) -> bool:
    connection.setblocking(False)
    try:
        return connection.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        connection.setblocking(True)


def _echo_over_ipv6(port: int) -> bool:
    """A C-ECHO by pynetdicom over ``::1``, as the registered node ``TEST_AET``."""
    from pynetdicom import AE

    ae = AE(ae_title=TEST_AET)
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.network_timeout = 10
    association = ae.associate("::1", port, ae_title=LISTENER_AET)
    try:
        return bool(association.is_established) and association.send_c_echo().Status == 0
    finally:
        if association.is_established:
            association.release()
        ae.shutdown()


@pytest.fixture
def dual_stack(tmp_path: Path) -> Iterator[Listener]:
    require_tools()
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    listener = Listener(
        home,
        free_port(),
        [],
        extra_env={
            # Longer than the test: stalled connections hold their slots throughout.
            "DXASSIST_DIMSE_NETWORK_TIMEOUT": "300",
            "DXASSIST_DIMSE_MAX_ASSOCIATIONS_PER_HOST": str(PER_HOST),
        },
        host="::",
    )
    listener.start()
    try:
        yield listener
    finally:
        listener.stop()


def test_ipv6_peers_share_the_per_host_limit_by_their_64_and_mapped_ipv4_peers_by_their_address(
    dual_stack: Listener,
) -> None:
    # One IPv6 host cycling through addresses of its /64 holds one share, not one per address.
    slots = _Slots(total=100, per_host=PER_HOST)
    for suffix in ("a", "b", "c"):
        assert slots.take(f"2001:db8:5:7::{suffix}") is None
    assert slots.take("2001:db8:5:7:8000::1") == "host_limit"
    assert slots.take("2001:db8:5:7:dead:beef:0:1%eth0") == "host_limit"
    assert slots.take("2001:db8:5:8::a") is None  # the next /64 is another peer
    # IPv4-mapped addresses are IPv4 peers, each its own (never all of them one ::/64).
    for _ in range(PER_HOST):
        assert slots.take("::ffff:10.0.0.1") is None
    assert slots.take("10.0.0.1") == "host_limit"
    assert slots.take("::ffff:10.0.0.2") is None
    # A slot given back under any of its peer's addresses frees that peer's share.
    slots.give_back("2001:db8:5:7::99")
    assert slots.take("2001:db8:5:7::100") is None
    # A registered node's own IPv6 address keeps a share of its own within a crowded /64.
    registered = _Slots(total=100, per_host=1, exact=frozenset({"2001:db8:5:7::10"}))
    assert registered.take("2001:db8:5:7::66") is None
    assert registered.take("2001:db8:5:7::67") == "host_limit"
    assert registered.take("2001:db8:5:7::10") is None

    # The listener, bound to "::": real connections from ::1 over the share are closed on arrival...
    port = dual_stack.port
    stalled = [_stalled(socket.AF_INET6, "::1", "::1", port) for _ in range(PER_HOST + 2)]
    stalled += [_stalled(socket.AF_INET, "127.0.0.2", "127.0.0.1", port) for _ in range(PER_HOST)]
    try:
        wait_until(
            lambda: sum(_still_open(peer) for peer in stalled) == 2 * PER_HOST,
            timeout=30,
            what="the shares of ::1 and of 127.0.0.2 held, the connections over them closed",
        )
        # ... and IPv4 peers, seen as ::ffff:127.0.0.x, are each their own peer: 127.0.0.1 still associates
        # while ::1 and 127.0.0.2 hold their whole shares.
        assert echo(port, timeout=10).returncode == 0
    finally:
        for peer in stalled:
            with contextlib.suppress(OSError):
                peer.close()
    # Given back when they close: ::1 associates again.
    wait_until(lambda: _echo_over_ipv6(port), timeout=30, what="a C-ECHO over ::1")


def _echo(port: int, calling: str, *, over: str) -> bool:
    """Whether a C-ECHO as ``calling`` from ``over`` (``127.0.0.1`` or ``::1``) is answered."""
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.network_timeout = 10
    association = ae.associate(over, port, ae_title=LISTENER_AET)
    try:
        # A node from another host is aborted once established: its C-ECHO then has no status.
        answer = association.send_c_echo() if association.is_established else None
        return answer is not None and "Status" in answer and answer.Status == 0
    finally:
        if association.is_established:
            association.release()
        ae.shutdown()


def test_a_node_registered_with_its_host_sends_to_a_listener_bound_to_every_ipv6_address(
    tmp_path: Path,
) -> None:
    # Bound to "::", the listener sees an IPv4 node at ::ffff:a.b.c.d: compared as text with the "host"
    # the operator registered, every IPv4 node registered with its host was refused (unknown_node), and so
    # was an IPv6 one whose address was written another way (0:0:0:0:0:0:0:1 for ::1, capitals).
    require_tools()
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    nodes = [
        {"ae_title": TEST_AET, "facility": "F-PACS"},
        {"ae_title": "CR_ROOM1", "facility": "F-PACS", "host": "127.0.0.1"},
        {"ae_title": "CR_ROOM2", "facility": "F-PACS", "host": "0:0:0:0:0:0:0:1"},
    ]
    listener = Listener(
        home, free_port(), [], extra_env={"DXASSIST_DIMSE_NODES": json.dumps(nodes)}, host="::"
    )
    listener.start()
    try:
        assert _echo(listener.port, "CR_ROOM1", over="127.0.0.1")
        assert _echo(listener.port, "CR_ROOM2", over="::1")
        # From elsewhere than its host, a node is still refused.
        assert not _echo(listener.port, "CR_ROOM1", over="::1")
        assert not _echo(listener.port, "CR_ROOM2", over="127.0.0.1")
    finally:
        listener.stop()
