"""The audit chain's head, anchored outside the database: a signed file under ``DXASSIST_HOME``.

The hash chain shows an edited or deleted entry, but someone with full rights on the database could
rewrite every entry from some point on (a "re-chain") or cut the tail and move the head back, and the
chain would verify. The anchor closes that: after every commit that appends entries, the newest
``(seq, hash)`` is written to ``audit/head.json`` with an HMAC-SHA256 under a secret kept in
``keys/audit-anchor.key`` (0600). ``dxassist audit verify`` then requires the chain to hold entry ``seq``
with exactly that hash: a re-chained trail has other hashes, a truncated one has no such entry.

The anchor only moves forward (a file lock serialises writers; an older head never replaces a newer
one), and only along the chain: a new head is anchored only while the trail still holds the anchored
entry (the new entries chain onto it, or the record has it), and never over a damaged or forged anchor.
Otherwise one more audited access after a re-chain or a cut would anchor the changed trail and hide it.

The file is written by one anchoring thread per process, not by the committing request (a write and its
fsync cost about as much as the commit): each commit hands its head over (:meth:`HeadAnchor.submit`) and
the thread anchors the newest head committed meanwhile, checking that the heads handed over chain onto
one another as every commit's own write would have. The anchor therefore trails the chain by the time one
anchor write takes (milliseconds). :meth:`HeadAnchor.read` (``audit verify``), :meth:`HeadAnchor.flush`
and :meth:`HeadAnchor.close` (the record's ``close``, and the interpreter's exit) wait until this
process's commits are anchored. A crash between a commit and its anchoring leaves the anchor behind the
chain, which is still a valid lower bound; it never gets ahead of it (the record's commits are on disk
before they are handed over). The file is replaced atomically, its new content on disk before the rename.
Paths are relative to ``DXASSIST_HOME`` (the home can be moved).
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from inference.observability import count_anchor_failure
from inference.record._errors import RecordError

ANCHOR_FILE: Final = Path("audit") / "head.json"
KEY_FILE: Final = Path("keys") / "audit-anchor.key"
_LOCK_FILE: Final = Path("audit") / ".head.lock"

logger = logging.getLogger(__name__)


_KEY_BYTES: Final = 32


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AnchorError(RecordError):
    """The anchor file is unreadable, malformed or its signature does not match (it was forged)."""


@dataclass(frozen=True)
class AnchoredHead:
    """The newest ``(seq, hash)`` written to the anchor."""

    seq: int
    hash: str


@dataclass(frozen=True)
class _Handed:
    """A committed transaction's appended entries, handed to the anchoring thread: the entry its first new
    entry chains onto (``base``), its newest entry (``head``), and how to ask the record for an entry."""

    base: AnchoredHead
    head: AnchoredHead
    holds: Callable[[AnchoredHead], bool]


_FLUSH_AT_EXIT_SECONDS: Final = 10.0
_anchoring: weakref.WeakSet[HeadAnchor] = weakref.WeakSet()  # anchors whose thread may hold heads


@atexit.register
def _flush_at_exit() -> None:
    """A command that exits without closing its record still anchors what it committed (the anchoring
    thread is a daemon: it would be stopped mid-way otherwise)."""
    for anchor in list(_anchoring):
        if not anchor.flush(timeout=_FLUSH_AT_EXIT_SECONDS):
            _say_not_anchored()


def _say_not_anchored() -> None:
    # The anchor stays behind the trail (a lower bound): said, as a failed anchor write is.
    logger.error(
        "the process exits with audit entries it committed not anchored (the anchor file stayed "
        "locked or its disk stalled): the anchor is behind the trail; run `dxassist audit verify`",
        extra={"code": "anchor_write_failed"},
    )


class HeadAnchor:
    """The signed head file of one ``DXASSIST_HOME``, and the thread that anchors this process's commits.

    Args:
        home: ``DXASSIST_HOME``; the key is created there on first use.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self._known_key: bytes | None = None  # read once: a home's key never changes once written
        self._failing = False  # the last anchor write of this process failed
        self._reset_thread()

    def _reset_thread(self) -> None:
        # Also in a forked child, whose copy of the lock may be held by a thread that does not exist there.
        self._pid = os.getpid()
        self._turn = threading.Condition()
        self._handed: list[_Handed] = []
        self._submitted = 0  # heads handed over
        self._settled = 0  # heads anchored, or kept out (logged)
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        """Where the anchor lives (``DXASSIST_HOME/audit/head.json``)."""
        return self.home / ANCHOR_FILE

    def _key(self, *, create: bool) -> bytes | None:
        """The signing key (created when ``create`` and absent); None when absent and not created.

        Raises:
            AnchorError: The key file is not a key (empty or cut short: never sign with it).
        """
        if self._known_key is not None:
            return self._known_key
        path = self.home / KEY_FILE
        if not path.exists():
            if not create:
                return None
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                # Another process created it a moment ago and may still be writing it.
                for _ in range(100):
                    if path.stat().st_size >= _KEY_BYTES:
                        break
                    time.sleep(0.01)
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(secrets.token_bytes(_KEY_BYTES))
                    handle.flush()
                    os.fsync(handle.fileno())  # a key lost to a power loss would orphan every anchor
                _fsync_folder(path.parent)
        key = path.read_bytes()
        if len(key) != _KEY_BYTES:
            raise AnchorError(
                f"The audit anchor key ({KEY_FILE}) is damaged: {len(key)} bytes instead of {_KEY_BYTES}."
            )
        self._known_key = key
        return key

    @staticmethod
    def _mac(key: bytes, seq: int, digest: str) -> str:
        return hmac.new(key, f"dxassist-audit-head:{seq}:{digest}".encode(), hashlib.sha256).hexdigest()

    @property
    def current(self) -> bool:
        """False while this process's last anchor write failed (logged ``anchor_write_failed``, counted in
        ``dxassist_audit_anchor_failures_total``): the anchor is behind the trail until a later commit's
        anchoring writes it (``/readyz`` reports it as the ``audit_anchor`` check)."""
        return not self._failing

    def ensure_key(self) -> None:
        """Create the key now if it does not exist (before several processes could race to)."""
        self._key(create=True)

    @property
    def keyed(self) -> bool:
        """True once a server has anchored this home's trail (the key exists)."""
        return (self.home / KEY_FILE).exists()

    def read(self) -> AnchoredHead | None:
        """The anchored head, once this process's commits are anchored; None when nothing was anchored yet.

        Raises:
            AnchorError: The file exists but is malformed, or its signature does not match.
        """
        self.flush()
        return self._read_file()

    def _read_file(self) -> AnchoredHead | None:
        if not self.path.exists():
            return None
        key = self._key(create=False)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            seq, digest, mac = int(data["seq"]), str(data["hash"]), str(data["mac"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise AnchorError("The audit head anchor is unreadable or malformed.") from e
        if key is None or not hmac.compare_digest(mac, self._mac(key, seq, digest)):
            raise AnchorError("The audit head anchor's signature does not match (it was altered or forged).")
        return AnchoredHead(seq=seq, hash=digest)

    def advance(
        self,
        seq: int,
        digest: str,
        *,
        base: AnchoredHead | None = None,
        holds: Callable[[AnchoredHead], bool] | None = None,
    ) -> bool:
        """Anchor ``(seq, digest)`` unless a newer head is anchored already, or the trail no longer holds
        the anchored entry.

        ``base`` is the entry the new entries chain onto. When it is the anchored entry, the chain itself
        proves the trail still holds it; otherwise (another process appended in between, or the trail was
        changed) ``holds`` asks the record. Without ``base`` nothing is checked (a first anchor).

        Returns:
            False when the anchor was kept because the trail no longer holds its entry, or the anchor is
            damaged or forged: someone changed one of them, which `audit verify` reports. A new head is
            not anchored over it, or one more append would hide the change.
        """
        key = self._key(create=True)
        assert key is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.home / _LOCK_FILE, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = self._read_file()
            except AnchorError:
                if base is not None:
                    return False
                current = None
            if current is None and base is not None and base.seq > 0:
                # Entries were chained before these, yet no anchor names any: it was removed (an officer's
                # reset after review, or someone hiding a cut tail) or this home is anchored for the
                # first time since it had entries (an upgrade). From here on the trail verifies again, so
                # the moment is said loudly: an officer who did not remove it compares the head hash
                # kept elsewhere.
                logger.critical(
                    "the audit head anchor was missing; the trail's head is anchored afresh: if no security "
                    "officer removed audit/head.json, run `dxassist audit verify` against the head hash "
                    "kept elsewhere",
                    extra={"event": "audit_anchor_reset", "code": "audit_anchor_reset"},
                )
            if current is not None and current.seq >= seq:
                return True
            if current is not None and base is not None and base != current:
                if holds is None or not holds(current):
                    return False
            tmp = self.path.with_name(f".head.{os.getpid()}.tmp")
            body = json.dumps({"seq": seq, "hash": digest, "mac": self._mac(key, seq, digest)})
            with open(tmp, "wb") as handle:
                handle.write(body.encode("utf-8"))
                handle.flush()
                # On disk before it is renamed into place: a filesystem that may keep the rename but not
                # the data after a power loss (XFS does) would leave an empty anchor, which `audit verify`
                # reports as unreadable. A rename that is lost leaves the older anchor, a lower bound.
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            if current is None:  # the first anchor's name, lost to a power loss, would read as deleted
                _fsync_folder(self.path.parent)
        return True

    def submit(
        self, seq: int, digest: str, *, base: AnchoredHead, holds: Callable[[AnchoredHead], bool]
    ) -> None:
        """Hand over a committed head (``seq``, ``digest``) chained onto ``base``, for the anchoring thread
        (:meth:`advance`, with ``holds``). Returns at once; :meth:`flush` waits for it."""
        if self._pid != os.getpid():
            self._reset_thread()
        with self._turn:
            self._handed.append(_Handed(base, AnchoredHead(seq, digest), holds))
            self._submitted += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dxassist-anchor", daemon=True)
                self._thread.start()
                _anchoring.add(self)
            self._turn.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every head this process handed over so far is anchored (or kept out, and logged).

        Returns:
            False when ``timeout`` seconds passed first.
        """
        if self._pid != os.getpid():
            self._reset_thread()
        with self._turn:
            target = self._submitted
            return self._turn.wait_for(lambda: self._settled >= target, timeout)

    def close(self) -> None:
        """Anchor what was handed over, then stop the anchoring thread (a later :meth:`submit` starts it
        again). Waits at most as long as the process exit does: an anchor file that stays locked, or a
        stalled disk, does not keep a stopping server from stopping (it is logged, and the anchor stays
        behind the trail, a lower bound; the thread goes on, and may still write it)."""
        deadline = time.monotonic() + _FLUSH_AT_EXIT_SECONDS
        anchored = self.flush(timeout=_FLUSH_AT_EXIT_SECONDS)
        with self._turn:
            thread, self._thread = self._thread, None
            self._turn.notify_all()
        if not anchored:
            _say_not_anchored()
        elif thread is not None:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        _anchoring.discard(self)

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._turn:
                while not self._handed and self._thread is me:
                    self._turn.wait()
                if not self._handed:  # closed, and nothing left
                    return
                batch, self._handed = self._handed, []
            try:
                for run in _runs(batch):
                    self._anchor_run(run)
            finally:
                with self._turn:
                    self._settled += len(batch)
                    self._turn.notify_all()

    def _anchor_run(self, run: list[_Handed]) -> None:
        """Anchor the newest head of ``run`` (heads that chain onto one another), from the first one's
        base: what advancing after each of its commits in turn would have anchored."""
        first, last = run[0], run[-1]
        try:
            kept = not self.advance(last.head.seq, last.head.hash, base=first.base, holds=last.holds)
        except Exception:  # the file system's or the database's: logged, and the thread goes on
            # The entries are committed; the anchor stays behind (a lower bound) until the next append.
            self._failing = True
            count_anchor_failure()
            logger.error("the audit head anchor could not be written", extra={"code": "anchor_write_failed"})
            return
        if not kept:
            self._failing = False
        else:
            logger.critical(
                "the audit trail no longer holds the anchored entry, or the anchor is damaged: the anchor is "
                "kept; run `dxassist audit verify`",
                extra={"event": "audit_anchor_mismatch", "code": "audit_anchor_mismatch"},
            )


def _runs(batch: list[_Handed]) -> list[list[_Handed]]:
    """``batch`` in chain order, cut where a head does not chain onto the one before it (another process
    appended in between, or the trail was changed): each run is anchored with its own checks."""
    runs: list[list[_Handed]] = []
    for handed in sorted(batch, key=lambda h: h.head.seq):
        if runs and runs[-1][-1].head == handed.base:
            runs[-1].append(handed)
        else:
            runs.append([handed])
    return runs
