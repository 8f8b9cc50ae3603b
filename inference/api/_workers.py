"""Several server processes on one port (``dxassist serve --workers N``) and what they share.

uvicorn's supervisor starts N workers on the one listening socket and starts a new one when a worker
dies; the kernel hands each connection to one of them. Each worker is a whole server (models, threads,
outbox worker, its own interpreter and GIL), so concurrent studies are analysed on more than one core.
What must not be per process is shared through a private folder the supervisor makes for the run:

- metrics: prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), so ``/metrics`` answers
  the same totals whichever worker the scrape reaches;
- rate limits: one table of token buckets mapped by every worker (``inference.api._ratelimit``).

Each worker listens on a socket of its own, bound to the same address with ``SO_REUSEPORT``: the
kernel spreads new connections over them by a hash of their addresses. (Sharing the supervisor's one
socket, the first worker to wake took a whole burst of connections, asyncio accepting every waiting one
at each wake-up, and with keep-alive kept them: one worker did all the work while the other idled, in
one run of five even with one accept per wake-up.)

Everything else already works across processes, as it does across replicas: the record (one database),
the audit trail and its anchor (a file lock), the outbox (leases), the model cache (atomic renames).
Before the workers start, the supervisor brings the record's schema up to date and creates the keys
once, so N workers never race to create them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from inference.config import Settings
from inference.errors import InferenceError
from inference.observability import MULTIPROCESS_DIR_ENV

WORKERS_DIR_ENV: Final = "DXASSIST_WORKERS_DIR"
"""Set by ``dxassist serve --workers N`` for its workers (the shared folder); not a setting to set."""


def shared_dir() -> Path | None:
    """The folder this process shares with the other workers of its server, or None when alone."""
    value = os.environ.get(WORKERS_DIR_ENV)
    return Path(value) if value else None


_SHARED_THREADS: Final = ("DXASSIST_INTRA_OP_THREADS", "DXASSIST_DECODE_THREADS")
"""Settings whose 0 means "every core the process may use": with N workers, each worker's share."""


@contextmanager
def shared_state(workers: int) -> Iterator[Path]:
    """A private folder for one run of the workers, named in the environment they inherit.

    Made with mode 0700 in the system's temporary folder (it holds counters and rate-limit buckets,
    nothing about patients) and removed with its content when the run ends. Thread counts left to their
    default of every core become each worker's share of the cores, so N workers do not each start a
    pool as wide as the machine.
    """
    run = Path(tempfile.mkdtemp(prefix="dxassist-workers-"))
    metrics = run / "metrics"
    metrics.mkdir()
    names = (WORKERS_DIR_ENV, MULTIPROCESS_DIR_ENV, *_SHARED_THREADS)
    saved = {name: os.environ.get(name) for name in names}
    os.environ[WORKERS_DIR_ENV] = str(run)
    os.environ[MULTIPROCESS_DIR_ENV] = str(metrics)
    share = max(1, len(os.sched_getaffinity(0)) // max(1, workers))
    for name in _SHARED_THREADS:
        if (saved[name] or "0").strip() in ("", "0"):
            os.environ[name] = str(share)
    try:
        yield run
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(run, ignore_errors=True)


class ServerNotStarted(InferenceError):
    """What the server needs before it starts (the record, the keys) could not be prepared; nothing
    started."""


def prepare_home(settings: Settings) -> None:
    """What the first request would create, created once before the server (or its workers) start: the
    record's schema, the token signing key and the audit anchor's key.

    Raises:
        ServerNotStarted: The record cannot be opened or migrated, or a key cannot be read or made.
    """
    from inference.record import HeadAnchor, Record, RecordUnavailable
    from inference.security import signing_key

    try:
        record = Record(settings.record_url)
        try:
            record.migrate()
        finally:
            record.close()
    except RecordUnavailable as e:  # which database, and the driver's reason for not connecting
        raise ServerNotStarted(str(e)) from e
    except Exception as e:  # a failed migration's message may quote rows: the type is enough here
        raise ServerNotStarted(
            f"The record could not be opened or migrated ({type(e).__name__}); check that the database "
            "answers (DXASSIST_DATABASE_URL) and start again."
        ) from e
    try:
        HeadAnchor(settings.resolved_home).ensure_key()
        if not settings.security.jwks_url:
            signing_key(settings)
    except (OSError, InferenceError) as e:
        raise ServerNotStarted(
            f"The keys under DXASSIST_HOME could not be read or created ({type(e).__name__})."
        ) from e


class ReusePortLoop(asyncio.SelectorEventLoop):
    """asyncio's selector loop whose servers bind with ``SO_REUSEPORT`` (uvicorn's ``loop`` for the
    workers, each binding its own listening socket to the one address)."""

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        kwargs["reuse_port"] = True
        return await super().create_server(*args, **kwargs)
