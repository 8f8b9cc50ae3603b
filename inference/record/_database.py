"""The one session factory every concern of the record works through, and its write transaction."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from sqlalchemy import event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from inference.record import _audit
from inference.record._anchor import AnchoredHead, HeadAnchor
from inference.record._engine import IMMEDIATE, make_engine, upgrade_to_head
from inference.record._errors import Conflict, InvalidData, RecordError
from inference.record._models import AuditEvent

logger = logging.getLogger(__name__)

T = TypeVar("T")

_WRITE_ATTEMPTS: Final = 3
CHECKPOINT_INTERVAL: Final = 0.25
"""Seconds between two background checkpoints of a SQLite record (at most; none while nothing commits)."""


def _watch_head(sessions: sessionmaker[Session], anchor: HeadAnchor) -> None:
    """Hand the newest audit head to the anchoring thread after every commit that appended entries (see
    ``_anchor``): the committing request does not wait for the anchor's write."""

    def holds(anchored: AnchoredHead) -> bool:
        with sessions() as reading:
            found = reading.scalar(select(AuditEvent.hash).where(AuditEvent.seq == anchored.seq))
        return found == anchored.hash

    @event.listens_for(sessions, "after_commit")
    def _committed(session: Session) -> None:
        head = session.info.pop(_audit.PENDING_HEAD, None)
        if isinstance(head, _audit.PendingHead):
            anchor.submit(head.seq, head.hash, base=AnchoredHead(head.base_seq, head.base_hash), holds=holds)

    @event.listens_for(sessions, "after_rollback")
    def _rolled_back(session: Session) -> None:
        session.info.pop(_audit.PENDING_HEAD, None)


class _WriterTurn:
    """One SQLite writer at a time: a thread lock for this process, and an ``flock`` on a file beside the
    database for the processes sharing it (the workers of ``dxassist serve --workers``, a listener beside
    a server).

    A writer that finds SQLite's write lock taken sleeps in SQLite's busy handler by growing steps (1, 2,
    5, ... 100 ms) however soon the lock is free again; one waiting here is woken as soon as the writer
    before it commits. Reentrant within a thread (the file lock is taken by the outermost turn only);
    the file is opened again in a forked child, whose lock must not be its parent's.
    """

    def __init__(self, lock_path: Path | None) -> None:
        self._thread = threading.RLock()
        self._depth = 0
        self._path = lock_path
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int | None:
        if self._path is None:
            return None
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    def __enter__(self) -> _WriterTurn:
        self._thread.acquire()
        if self._depth == 0:
            try:
                fd = self._file()
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                # Without the file (a read-only folder): SQLite's busy handler still arbitrates.
                logger.warning("the record's writer lock file could not be used", exc_info=True)
        self._depth += 1
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


def _writer_lock_path(database: str | None) -> Path | None:
    """The lock file beside a SQLite database file (None in memory)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(f"{database}.writer.lock")


class _Checkpointer:
    """Copies a SQLite database's write-ahead log into the database file on a thread of its own.

    SQLite's automatic checkpoint runs inside the COMMIT that takes the log past 1000 pages: with a few
    hundred KB per imaging result, about one upload in ten paid 10-15 ms more (copying the log and
    syncing the file) on its request path, while holding the write lock every other writer of the file
    (the other workers of ``serve --workers``, a DICOM listener) waited for. With it, commits only append
    to the log (``wal_autocheckpoint=0`` on this engine's connections) and this thread, woken after
    commits, runs a PASSIVE checkpoint, which never waits for readers or writers and never blocks them,
    at most every :data:`CHECKPOINT_INTERVAL` seconds. Durability is unchanged: a committed transaction
    is in the log, which SQLite replays after a crash; the last connection to close copies it whole.
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def committed(self) -> None:
        """A transaction was committed: checkpoint soon (starts the thread on first use, in this process)."""
        if self._stop.is_set():
            return
        if self._thread is None or self._pid != os.getpid():
            with self._lock:
                # Under the lock :meth:`stop` takes: it never sees a thread not started yet, and once it
                # has run, no thread starts.
                if not self._stop.is_set() and (self._thread is None or self._pid != os.getpid()):
                    thread = threading.Thread(target=self._run, name="dxassist-checkpoint", daemon=True)
                    thread.start()
                    self._pid = os.getpid()
                    self._thread = thread
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            self.checkpoint()
            self._stop.wait(CHECKPOINT_INTERVAL)  # commits meanwhile are copied by the next one

    def checkpoint(self) -> None:
        """Copy what the log holds into the database file, as far as readers let (PASSIVE)."""
        try:
            connection = self._engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cursor.fetchall()
                cursor.close()
            finally:
                connection.close()
        except Exception:  # the log keeps the data; the next commit wakes another try
            logger.warning("the record's write-ahead log could not be checkpointed", exc_info=True)

    def stop(self) -> None:
        """Stop the thread (the engine's last connection to close copies the rest of the log)."""
        with self._lock:
            self._stop.set()
            self._wake.set()
            thread, pid = self._thread, self._pid
        if thread is not None and pid == os.getpid() and thread is not threading.current_thread():
            thread.join(timeout=30)


def _is_data_exception(error: DBAPIError) -> bool:
    # SQLSTATE class 22: a value the column cannot hold (psycopg refuses a NUL in text itself, as a
    # DataError without a SQLSTATE). SQLite stores any length and any text.
    sqlstate = str(getattr(error.orig, "sqlstate", None) or "")
    return isinstance(error, DataError) or sqlstate.startswith("22")


def _is_check_violation(error: IntegrityError) -> bool:
    # psycopg reports SQLSTATE 23514; sqlite3 only says so in its message.
    return getattr(error.orig, "sqlstate", None) == "23514" or "CHECK constraint failed" in str(error.orig)


def _refusal(error: DBAPIError) -> InvalidData | None:
    """The refusal for good that a database error stands for (the same data would be refused again), or
    None when trying again may succeed (a lost race, a connection that failed)."""
    if isinstance(error, IntegrityError) and _is_check_violation(error):
        return InvalidData(
            "The record's integrity checks refused a value (a heatmap must be a PNG, probabilities lie "
            "between 0 and 1, vital signs and outbox states use the contract's codes); nothing was saved."
        )
    if _is_data_exception(error):
        return InvalidData(
            "A value is too long for the record or holds a character it cannot store (such as NUL); "
            "nothing was saved. Check the lengths and characters of the identifiers sent."
        )
    return None


class Database:
    """The engine, its one session factory and the audit head anchor, shared by every concern.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path/record.db`` or ``postgresql+psycopg://user@host/db``.
        anchor: Where the newest audit head is anchored outside the database (None: not anchored).
    """

    def __init__(self, url: str, *, anchor: HeadAnchor | None = None) -> None:
        parsed = make_url(url)
        on_file = parsed.get_backend_name() == "sqlite" and _writer_lock_path(parsed.database) is not None
        self.engine = make_engine(url, background_checkpoints=on_file)
        self._checkpoints = _Checkpointer(self.engine) if on_file else None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.anchor = anchor
        if anchor is not None:
            _watch_head(self.sessions, anchor)
        if self._checkpoints is not None:
            checkpoints = self._checkpoints

            @event.listens_for(self.sessions, "after_commit")
            def _checkpoint_soon(_session: Session) -> None:
                checkpoints.committed()

        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in SQLite's busy
        # handler by growing steps (1, 2, 5, ... 100 ms) however soon the lock is free again: under
        # concurrent uploads the CPU idled while results waited. The writers of this process and of the
        # other processes on the same file queue on a lock of their own instead, each woken as soon as the
        # one before commits (``_WriterTurn``). PostgreSQL locks rows and needs none.
        self._writers: _WriterTurn | None = (
            _WriterTurn(_writer_lock_path(self.engine.url.database))
            if self.engine.dialect.name == "sqlite"
            else None
        )

    def _write_turn(self) -> AbstractContextManager[object]:
        return self._writers if self._writers is not None else nullcontext()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (``alembic upgrade head``).

        On SQLite, in the writers' turn (:class:`_WriterTurn`): processes started together on a new record
        (``serve`` and ``listen`` by one unit file, two workers) take turns, the later ones finding the
        schema at head. Without it, each began creating the tables and all but one failed to start with
        "database is locked" (a transaction that read before writing gets SQLite's busy error at once,
        its busy timeout notwithstanding). PostgreSQL replicas take an advisory lock instead (the
        migrations' ``env.py``).
        """
        with self._write_turn():
            upgrade_to_head(self.engine)

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            logger.warning("The patient record database does not answer.", exc_info=True)
            return False
        return True

    def close(self) -> None:
        """Anchor the audit head this process committed, then close every pooled connection (the log is
        copied into the database file as they close)."""
        if self.anchor is not None:
            self.anchor.close()  # it may ask the record whether the trail still holds the anchored entry
        if self._checkpoints is not None:
            self._checkpoints.stop()
        self.engine.dispose()
        if self._writers is not None:
            self._writers.close()

    def read(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one read session."""
        with self.sessions() as session:
            return work(session)

    def write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction, retrying when a concurrent writer won a UNIQUE race.

        Raises:
            InvalidData: The database refused a value for good: data it cannot hold (too long, a NUL
                character) or a value its CHECK constraints refuse; nothing was saved, and the same data
                will be refused again.
            RecordError: The database failed; nothing was saved.
            Conflict: Concurrent writes kept conflicting.
        """
        last: IntegrityError | None = None
        for _ in range(_WRITE_ATTEMPTS):
            try:
                with self._write_turn(), self.sessions() as session, session.begin():
                    session.connection(execution_options={IMMEDIATE: True})
                    return work(session)
            except DBAPIError as e:
                refused = _refusal(e)
                if refused is not None:
                    raise refused from e
                if not isinstance(e, IntegrityError):
                    raise RecordError("The record could not store the result; nothing was saved.") from e
                # Another writer filed the same patient, study, device or result between our read and
                # our insert: the next attempt reads what it wrote.
                logger.info("A concurrent write to the record won a race; retrying the transaction.")
                last = e
        raise Conflict("The result could not be stored because concurrent writes kept conflicting.") from last

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction in this process's and the database file's writer turn (no retry): for the
        claims and appends that manage their own statements.

        Raises:
            InvalidData: The database refused a value for good (see :meth:`write`); nothing was saved.
        """
        with self._write_turn(), self.sessions() as session:
            try:
                with session.begin():
                    yield session
            except DBAPIError as e:
                refused = _refusal(e)
                if refused is not None:
                    raise refused from e
                raise
