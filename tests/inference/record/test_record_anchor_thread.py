"""The audit head is anchored by a thread of its own: a commit does not wait for the anchor file's write
and fsync, and what it committed is anchored all the same, so a trail cut or re-chained while its newest
entries wait to be anchored is still caught."""

from __future__ import annotations

import fcntl
import logging
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from inference.record import HeadAnchor, Record

_WAIT = 60.0  # a bound on a wait that must not block, so a regression fails instead of hanging


def _access(record: Record, n: int) -> int:
    return record.audit.append(
        subject="reader",
        role="radiologist",
        facility="north",
        action="results:read",
        resource_type="Result",
        resource_id=f"result-{n}",
        patient_id=None,
        outcome="success",
        client="10.0.0.7",
    )


@contextmanager
def _anchor_held(home: Path) -> Iterator[None]:
    """The anchor file's lock held, as by another process's anchor write on a slow disk."""
    (home / "audit").mkdir(parents=True, exist_ok=True)
    with open(home / "audit" / ".head.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def anchored(tmp_path: Path) -> Iterator[tuple[Record, HeadAnchor, Path]]:
    anchor = HeadAnchor(tmp_path / "home")
    record = Record(f"sqlite:///{tmp_path / 'record.db'}", anchor=anchor)
    record.migrate()
    try:
        yield record, anchor, tmp_path / "record.db"
    finally:
        record.close()


def test_a_commit_does_not_wait_for_the_anchor_and_is_anchored_once_it_can_be(
    anchored: tuple[Record, HeadAnchor, Path], tmp_path: Path
) -> None:
    record, anchor, _db = anchored
    _access(record, 0)
    first = anchor.read()
    assert first is not None and first.seq == 1
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        with _anchor_held(tmp_path / "home"):
            # Before, the commit's own thread wrote the anchor, and waited for its lock.
            assert pool.submit(_access, record, 1).result(timeout=_WAIT) == 2
            assert not anchor.flush(timeout=0)  # handed over, not anchored yet
            assert HeadAnchor(tmp_path / "home").read() == first  # as another process reads it meanwhile
    finally:
        pool.shutdown()
    assert anchor.flush(timeout=_WAIT)
    report = record.audit.verify()
    assert report.ok and report.anchored_seq == report.head_seq == 2


@pytest.mark.parametrize("change", ["cut", "rechain"])
def test_a_trail_changed_while_its_newest_entries_wait_to_be_anchored_is_caught(
    change: str,
    anchored: tuple[Record, HeadAnchor, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Someone with database rights changes the trail after entries 4 and 5 were committed, before the
    # anchoring thread wrote them: it anchors the heads the commits handed over, not what the database
    # holds by then, so the change is caught as if the anchor had been written at each commit.
    from _audit_tamper import cut_tail, rechain

    record, anchor, db = anchored
    for n in range(3):
        _access(record, n)
    assert anchor.flush(timeout=_WAIT)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        with _anchor_held(tmp_path / "home"):
            for n in (3, 4):
                pool.submit(_access, record, n).result(timeout=_WAIT)
            if change == "cut":
                cut_tail(db, 2)
                caught = "tail was removed"
            else:
                rechain(db, "UPDATE audit_events SET subject = 'someone-else' WHERE seq = 2")
                caught = "re-chained"
    finally:
        pool.shutdown()
    assert anchor.flush(timeout=_WAIT)
    report = record.audit.verify()
    assert report.anchored_seq == 5
    assert any(caught in p.reason for p in report.problems), report.problems
    # Accesses past the anchored entry do not anchor the changed trail: the anchor is kept, and the
    # server says so.
    with caplog.at_level(logging.CRITICAL):
        for n in range(5, 8):
            _access(record, n)
        assert anchor.flush(timeout=_WAIT)
    assert "audit_anchor_mismatch" in [getattr(r, "code", None) for r in caplog.records]
    assert record.audit.verify().anchored_seq == 5


def test_concurrent_commits_are_anchored_up_to_the_newest_without_a_false_alarm(
    anchored: tuple[Record, HeadAnchor, Path], caplog: pytest.LogCaptureFixture
) -> None:
    # Commits of several threads hand their heads over in any order, several between two anchor writes:
    # the newest is anchored, along a chain the heads prove, and nothing reads as a changed trail.
    record, anchor, _db = anchored
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda n: _access(record, n), range(40)))
    report = record.audit.verify()
    assert report.ok and report.anchored_seq == report.head_seq == 40
    codes = {getattr(r, "code", None) for r in caplog.records}
    assert not codes & {"audit_anchor_mismatch", "anchor_write_failed"}


def test_a_command_that_exits_without_closing_its_record_has_anchored_what_it_committed(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'record.db'}"
    home = tmp_path / "home"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from inference.record import HeadAnchor, Record\n"
        "record = Record(sys.argv[1], anchor=HeadAnchor(Path(sys.argv[2])))\n"
        "record.migrate()\n"
        "for n in range(3):\n"
        "    record.audit.append(subject='ops', role='admin', facility=None, action='users:add',\n"
        "                        resource_type=None, resource_id=None, patient_id=None,\n"
        "                        outcome='success', client=None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, url, str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    record = Record(url, anchor=HeadAnchor(home))
    try:
        report = record.audit.verify()
    finally:
        record.close()
    assert report.ok and report.anchored_seq == report.head_seq == 3


def test_a_command_that_exits_before_its_commits_are_anchored_says_so(tmp_path: Path) -> None:
    # The anchor file stays locked (another process's write on a stalled disk) past the wait at exit: the
    # process ends with its commits unanchored (a lower bound, still verifies), and it said nothing.
    url = f"sqlite:///{tmp_path / 'record.db'}"
    home = tmp_path / "home"
    script = (
        "import logging, sys\n"
        "from pathlib import Path\n"
        "from inference.record import HeadAnchor, Record\n"
        "logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s')\n"
        "record = Record(sys.argv[1], anchor=HeadAnchor(Path(sys.argv[2])))\n"
        "record.migrate()\n"
        "record.audit.append(subject='ops', role='admin', facility=None, action='users:add',\n"
        "                    resource_type=None, resource_id=None, patient_id=None,\n"
        "                    outcome='success', client=None)\n"
    )
    with _anchor_held(home):
        done = subprocess.run(
            [sys.executable, "-c", script, url, str(home)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "ERROR" in done.stderr and "not anchored" in done.stderr, done.stderr


def test_closing_the_record_while_the_anchor_file_stays_locked_returns_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # `dxassist serve` stopped (SIGTERM) while another process's anchor write holds the anchor file on a
    # stalled disk: closing the record gives up on the anchor after the bound the process exit waits,
    # and says so, instead of keeping the server from stopping. The anchor stays behind (a lower bound).
    anchor = HeadAnchor(tmp_path / "home")
    record = Record(f"sqlite:///{tmp_path / 'record.db'}", anchor=anchor)
    record.migrate()
    _access(record, 0)
    assert anchor.flush(timeout=_WAIT)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        with _anchor_held(tmp_path / "home"), caplog.at_level(logging.ERROR):
            _access(record, 1)
            # Before, close waited for the anchor with no bound: this timed out with the lock still held.
            pool.submit(record.close).result(timeout=_WAIT)
    finally:
        pool.shutdown()
    assert "anchor_write_failed" in [getattr(r, "code", None) for r in caplog.records]
    later = Record(f"sqlite:///{tmp_path / 'record.db'}", anchor=HeadAnchor(tmp_path / "home"))
    try:
        report = later.audit.verify()
    finally:
        later.close()
    assert report.ok and report.head_seq == 2  # anchored behind, or caught up once the lock was let go
