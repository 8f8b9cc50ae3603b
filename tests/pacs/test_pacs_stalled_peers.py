"""A peer that stops, trickles or floods in the middle of a PDU costs the DICOM listener a bounded slot.

pynetdicom reads a PDU's header and then the length it announces, without a timeout, before the calling
AE title is known: before the listener bounded its connections, three bytes of a header held a thread
for ever, ten such connections refused every node (A-ASSOCIATE-RJ, local limit), and a header announcing
2 GiB made it gather whatever followed in memory. ``dxassist listen`` runs here with a 2-second network
timeout (``DXASSIST_DIMSE_NETWORK_TIMEOUT``) and at most 3 connections from one address
(``DXASSIST_DIMSE_MAX_ASSOCIATIONS_PER_HOST``); the hostile peers connect from 127.0.0.2, the nodes
from 127.0.0.1 (dcmtk's ``echoscu``) or 127.0.0.2 (pynetdicom, which can bind its source address).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiny_models
from _certificates import certificates
from _pacs_harness import LISTENER_AET, TEST_AET, Listener, echo, free_port, require_tools, wait_until

pytestmark = pytest.mark.integration

HOSTILE = "127.0.0.2"
PER_HOST = 3
A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_RJ = 0x03
VERIFICATION = b"1.2.840.10008.1.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"


def _connect(port: int, source: str = HOSTILE) -> socket.socket:
    connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    connection.bind((source, 0))
    connection.connect(("127.0.0.1", port))
    return connection


def _closed_by_listener(connection: socket.socket, *, within: float) -> bool:
    """Whether the listener closes ``connection`` (EOF or reset) within ``within`` seconds."""
    connection.settimeout(within)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _still_open(connection: socket.socket) -> bool:
    connection.setblocking(False)
    try:
        return connection.recv(1) != b""  # the listener sends nothing before the request: data is a surprise
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        connection.setblocking(True)


def _echo_from(port: int, source: str) -> bool:
    """A C-ECHO by pynetdicom from ``source``, as the registered node ``TEST_AET``."""
    from pynetdicom import AE

    ae = AE(ae_title=TEST_AET)
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = ae.network_timeout = 10
    association = ae.associate("127.0.0.1", port, ae_title=LISTENER_AET, bind_address=(source, 0))
    try:
        return bool(association.is_established) and association.send_c_echo().Status == 0
    finally:
        if association.is_established:
            association.release()
        ae.shutdown()


def _start(tmp_path: Path, name: str, echo_args: tuple[str, ...] = (), **env: str) -> Listener:
    require_tools()
    home = tmp_path / name
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / f"{name}-build")
    listener = Listener(
        home,
        free_port(),
        [],
        extra_env={
            "DXASSIST_DIMSE_NETWORK_TIMEOUT": "2",
            "DXASSIST_DIMSE_MAX_ASSOCIATIONS_PER_HOST": str(PER_HOST),
            **env,
        },
        echo_args=echo_args,
    )
    listener.start()
    return listener


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    started = _start(tmp_path_factory.mktemp("stalled"), "plain")
    try:
        yield started
    finally:
        started.stop()


def test_a_peer_that_stops_in_the_middle_of_a_pdu_header_is_cut_off(listener: Listener) -> None:
    with contextlib.closing(_connect(listener.port)) as peer:
        peer.sendall(bytes([A_ASSOCIATE_RQ, 0, 0]))  # three of the header's six bytes, then nothing
        assert _closed_by_listener(peer, within=30)
    wait_until(lambda: "connection_stalled" in listener.log.read_text(), timeout=10, what="the stall logged")
    log = listener.log.read_text()
    assert "Traceback" not in log
    assert "Connection closed before the entire PDU" not in log


def test_a_pdu_trickled_a_byte_at_a_time_is_cut_off_at_the_network_timeout(listener: Listener) -> None:
    with contextlib.closing(_connect(listener.port)) as peer:
        peer.sendall(struct.pack(">BBL", A_ASSOCIATE_RQ, 0, 200))
        cut = False
        # A byte every half second for 10 s: each read would be within any per-read timeout.
        for _ in range(20):
            try:
                peer.sendall(b"\x00")
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            time.sleep(0.5)
        assert cut or _closed_by_listener(peer, within=10)


def test_a_pdu_announced_larger_than_the_listener_reads_is_refused_unread(listener: Listener) -> None:
    chunk = bytes(1 << 20)
    sent = 0
    with contextlib.closing(_connect(listener.port)) as peer:
        peer.settimeout(30)
        peer.sendall(struct.pack(">BBL", A_ASSOCIATE_RQ, 0, 0x7FFF_FFF0))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 256 * len(chunk):  # 256 MiB: gathered in memory by a listener that reads it
                peer.sendall(chunk)
                sent += len(chunk)
    # What the kernel's buffers took before the listener closed the connection, not the 256 MiB.
    assert sent < 64 * len(chunk)
    wait_until(lambda: "pdu_too_large" in listener.log.read_text(), timeout=10, what="the refusal logged")


def test_stalled_connections_from_one_address_leave_the_other_nodes_room(tmp_path: Path) -> None:
    # A network timeout longer than the test: the stalled connections hold their slots throughout.
    listener = _start(tmp_path, "slots", DXASSIST_DIMSE_NETWORK_TIMEOUT="300")
    stalled = [_connect(listener.port) for _ in range(12)]  # more than pynetdicom's own limit of 10
    try:
        for peer in stalled:
            peer.sendall(bytes([A_ASSOCIATE_RQ, 0, 0]))
        # Over its address's share, a connection is closed on arrival.
        wait_until(
            lambda: sum(_still_open(peer) for peer in stalled) == PER_HOST,
            timeout=30,
            what=f"all but {PER_HOST} of the stalled connections closed",
        )
        # Another node still associates, while the stalled ones hold their slots.
        assert echo(listener.port, timeout=10).returncode == 0
        assert sum(_still_open(peer) for peer in stalled) == PER_HOST
        for peer in stalled:
            peer.close()
        # Slots are given back when connections end: the hostile address's own nodes associate again.
        wait_until(lambda: _echo_from(listener.port, HOSTILE), timeout=30, what="a C-ECHO from 127.0.0.2")
        # Nine connections closed on arrival, one log line (a loop of them must not flood the log).
        assert listener.log.read_text().count("dimse_host_limit") == 1
    finally:
        for peer in stalled:
            peer.close()
        listener.stop()


def test_a_tls_handshake_that_stops_half_way_is_cut_off(tmp_path: Path) -> None:
    certs = certificates(tmp_path)
    listener = _start(
        tmp_path,
        "tls",
        ("+tls", str(certs["client_key"]), str(certs["client_cert"]), "+cf", str(certs["ca"])),
        DXASSIST_DIMSE_TLS_CERTFILE=str(certs["server_cert"]),
        DXASSIST_DIMSE_TLS_KEYFILE=str(certs["server_key"]),
    )
    try:
        with contextlib.closing(_connect(listener.port)) as peer:
            peer.sendall(bytes([0x16, 0x03, 0x01]))  # the first bytes of a TLS record, then nothing
            assert _closed_by_listener(peer, within=30)
        assert echo(listener.port, timeout=10, options=listener.echo_args).returncode == 0
    finally:
        listener.stop()


def test_the_listener_stops_cleanly_with_its_bounded_server(tmp_path: Path) -> None:
    listener = _start(tmp_path, "stop")
    process = listener.process
    assert process is not None
    listener.stop()  # SIGTERM, as systemd and Kubernetes stop it
    log = listener.log.read_text()
    assert process.returncode == 0, log[-3000:]
    assert "DICOM listener stopped" in log
    assert "Traceback" not in log


def test_connections_closed_before_any_request_give_their_slot_back_at_once(listener: Listener) -> None:
    # A load balancer's TCP health check: connect, close. Each must not hold its address's slot until the
    # association-request timer (30 s) runs out, or a few checks lock the address out.
    for _ in range(3 * PER_HOST):
        _connect(listener.port).close()
    # Well within the 30 s the slots would otherwise be held.
    wait_until(lambda: _echo_from(listener.port, HOSTILE), timeout=10, what="a C-ECHO from 127.0.0.2")


def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(value)) + value


def _association_request(context: bytes) -> bytes:
    """An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) from the registered node ``TEST_AET`` with one presentation
    context item, ``context``'s sub-items as they are given."""
    user = _item(0x50, _item(0x51, struct.pack(">L", 16384)) + _item(0x52, b"1.2.3.4"))
    body = (
        struct.pack(">HH", 1, 0)
        + LISTENER_AET.encode().ljust(16)
        + TEST_AET.encode().ljust(16)
        + bytes(32)
        + _item(0x10, b"1.2.840.10008.3.1.1.1")
        + _item(0x20, bytes([1, 0, 0, 0]) + context)
        + user
    )
    return struct.pack(">BBL", A_ASSOCIATE_RQ, 0, len(body)) + body


@pytest.mark.parametrize(
    "context",
    [_item(0x30, VERIFICATION), _item(0x40, IMPLICIT_LE)],
    ids=["no transfer syntax", "no abstract syntax"],
)
def test_a_presentation_context_missing_a_syntax_is_refused_and_gives_its_slot_back(
    listener: Listener, context: bytes
) -> None:
    # pynetdicom's negotiation raised on such a context: the association's thread died without an answer
    # and the connection stayed open, past every timeout, holding its slot: the address's share of them,
    # and enough addresses, refused every node until the peer chose to close.
    peers = [_connect(listener.port) for _ in range(PER_HOST)]
    try:
        for peer in peers:
            peer.sendall(_association_request(context))
        for peer in peers:
            peer.settimeout(15)
            answer = b""
            while len(answer) < 10:  # an A-ASSOCIATE-RJ PDU, whole
                received = peer.recv(10 - len(answer))
                assert received, "the listener closed the connection without an answer"
                answer += received
            assert answer[0] == A_ASSOCIATE_RJ
            assert _closed_by_listener(peer, within=15)
        assert _echo_from(listener.port, HOSTILE)
    finally:
        for peer in peers:
            peer.close()
    assert "uncaught" not in listener.log.read_text()
