"""``dxassist serve`` and ``dxassist listen``: start the HTTP API or the DICOM listener, after checking the
address can be bound and the execution provider is there."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from inference._common_cli import (
    CliError,
    _check_execution_provider,
    _settings,
)


def _check_address(host: str, port: int, *, what: str, option: str) -> None:
    """Refuse to start when ``host:port`` cannot be bound, before anything is loaded.

    Without this, a port another process holds was found only after the record was migrated and the
    models loaded, and reported in a third-party message the log guard withholds ("text withheld"), or
    as a traceback. The probe binds as the servers do (asyncio's ``create_server``: every address the
    host resolves to, ``SO_REUSEADDR``, IPv6 sockets IPv6 only, an address this host lacks skipped; no
    ``SO_REUSEPORT``), so a port held by the workers of another ``dxassist serve --workers N`` (each
    bound with ``SO_REUSEPORT``) is refused too instead of silently shared with them, and an address
    the server can bind is never refused (``--host ::`` beside an IPv4 listener of the port,
    ``localhost`` naming ``::1`` on a host without IPv6).

    Raises:
        CliError: The address is taken, not this host's, or not allowed to this user (exit status 2, as
            ``dxassist listen`` for its own port).
    """
    import errno
    import socket

    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        candidates = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise CliError(f"{what}: the address {host!r} cannot be resolved ({e.strerror}).", status=2) from e
    bound = 0
    unavailable: OSError | None = None
    for family, kind, proto, _name, address in candidates:
        probe = socket.socket(family, kind, proto)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)
            bound += 1
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:  # asyncio skips it too (that family is not enabled)
                unavailable = e
                continue
            if e.errno == errno.EACCES:
                why = "this user may not listen on that port; ports below 1024 need the privilege"
            else:
                why = f"another process may listen there (another {what}?); stop it"
            raise CliError(
                f"{what} cannot listen on {where} ({e.strerror}): {why} or choose another {option}.",
                status=2,
            ) from e
        finally:
            probe.close()
    if not bound:
        reason = unavailable.strerror if unavailable is not None else "no address"
        raise CliError(
            f"{what} cannot listen on {where} ({reason}): it is not an address of this host; choose "
            "another --host.",
            status=2,
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _worker_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"a number of processes from 1 to 64, not {value[:20]!r}")
    return count


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()
    _check_execution_provider(settings)
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        raise CliError("Give both --ssl-certfile and --ssl-keyfile for TLS, or neither.", status=2)
    if not _is_loopback(args.host) and args.ssl_certfile is None:
        print(
            f"Warning: serving on {args.host} without TLS; tokens and health data cross the network in "
            "clear. Use --ssl-certfile/--ssl-keyfile or a TLS-terminating proxy.",
            file=sys.stderr,
        )
    _check_address(args.host, args.port, what="dxassist serve", option="--port")
    try:
        from inference.api import serve
    except ImportError as e:
        raise CliError(f"The HTTP API cannot be loaded ({e}).") from e
    from inference.api._workers import ServerNotStarted

    # inference.api.serve switches uvicorn's access log off: it would log raw URLs with identifiers.
    try:
        serve(
            settings,
            host=args.host,
            port=args.port,
            ssl_certfile=str(args.ssl_certfile) if args.ssl_certfile else None,
            ssl_keyfile=str(args.ssl_keyfile) if args.ssl_keyfile else None,
            log_level=args.log_level,
            workers=args.workers,
        )
    except ServerNotStarted as e:
        raise CliError(str(e), status=3) from e  # uvicorn's status for a server that could not start
    return 0


def _cmd_listen(args: argparse.Namespace) -> int:
    settings = _settings()
    _check_execution_provider(settings)
    from inference.dimse import CannotListen, run_listener

    try:
        run_listener(
            settings, ae_title=args.ae_title, port=args.port, host=args.host, metrics_port=args.metrics_port
        )
    except CannotListen as e:
        raise CliError(str(e), status=2) from e
    return 0
