"""Two `dxassist listen` instances on one shared spool and one record (DXASSIST_DIMSE_GROUPING=database).

Each instance is its own process with its own ``DXASSIST_HOME`` (models, logs, audit anchor), as two
hosts behind a DICOM load balancer would be; they share ``DXASSIST_DIMSE_SPOOL`` (a folder standing for
the NFS or ReadWriteMany volume) and ``DXASSIST_DATABASE_URL`` (SQLite beside the spool, or a real
PostgreSQL). A study whose instances are split between the two, over associations open at the same time,
gives one result with every instance; a claim held by an instance that is SIGKILLed while analysing is
taken over by the other after its lease, and the study is filed once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from _pacs_dicom import CR_IMAGE, chest_cr, new_uid
from _pacs_harness import LISTENER_AET, TEST_AET, Listener, free_port, require_tools, wait_until
from _postgres import new_postgres_database, running_postgres

from inference.dicom._stable import study_key
from inference.record import Record

pytestmark = pytest.mark.integration

LEASE_SECONDS = 3
# Longer than one C-STORE round trip on a loaded machine, so the interleaved halves are one study.
QUIET_SECONDS = 3


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny models, built once; each instance's home gets a copy (hosts do not share a disk)."""
    require_tools()
    root = tmp_path_factory.mktemp("multi-listener-models")
    return tiny_models.seed_both(root / "models", root / "build")


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def record_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The record both instances share."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared' / 'record.db'}"
    return new_postgres_database(request.getfixturevalue("postgres"))


def _shared_env(record_url: str, spool: Path) -> dict[str, str]:
    return {
        "DXASSIST_DATABASE_URL": record_url,
        "DXASSIST_DIMSE_SPOOL": str(spool),
        "DXASSIST_DIMSE_GROUPING": "database",
        "DXASSIST_DIMSE_LEASE_SECONDS": str(LEASE_SECONDS),
        "DXASSIST_DIMSE_STABLE_SECONDS": str(QUIET_SECONDS),
    }


@contextlib.contextmanager
def _running_pair(
    tmp_path: Path, record_url: str, *, models: Path | None, env: dict[str, str] | None = None
) -> Iterator[tuple[Listener, Listener, Path]]:
    """Listeners A and B (started one after the other: the first migrates the record); the shared spool.
    Without ``models`` the instances have none, so every analysis fails."""
    spool = tmp_path / "shared" / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    listeners = []
    for name in ("a", "b"):
        home = tmp_path / f"host-{name}"
        home.mkdir()
        if models is not None:
            shutil.copytree(models, home / "models")
        extra = {**_shared_env(record_url, spool), **(env or {})}
        listeners.append(Listener(home, free_port(), [], extra_env=extra))
    try:
        for listener in listeners:
            listener.start()
        yield listeners[0], listeners[1], spool
    finally:
        for listener in listeners:
            listener.stop()


@pytest.fixture
def pair(models: Path, record_url: str, tmp_path: Path) -> Iterator[tuple[Listener, Listener, Path]]:
    with _running_pair(tmp_path, record_url, models=models) as running:
        yield running


def _send_interleaved(
    study: str,
    ports: tuple[int, ...],
    *,
    views: tuple[str, ...] = ("PA", "LATERAL", "PA", "LATERAL"),
    seed: int = 0,
) -> list[str]:
    """Send one chest CR per view of ``study`` alternately to the listeners, every association open
    throughout (a load balancer spreading one sender's associations); return the SOP Instance UIDs."""
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    series = new_uid()
    datasets = [
        dcmread(BytesIO(chest_cr(study=study, series=series, sop=new_uid(), view=view, seed=seed + n)))
        for n, view in enumerate(views)
    ]
    ae = AE(ae_title=TEST_AET)
    ae.add_requested_context(CR_IMAGE, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assocs = [ae.associate("127.0.0.1", port, ae_title=LISTENER_AET) for port in ports]
    try:
        assert all(assoc.is_established for assoc in assocs)
        sent = []
        for n, dataset in enumerate(datasets):
            assert int(assocs[n % len(assocs)].send_c_store(dataset).Status) == 0x0000
            sent.append(str(dataset.SOPInstanceUID))
        return sent
    finally:
        for assoc in assocs:
            assoc.release()


def _filed(url: str, study: str) -> tuple[int, set[str]]:
    """How many results the record holds for ``study``, and the SOP Instance UIDs it filed for it."""
    from sqlalchemy import text

    record = Record(url)
    try:
        with record.engine.connect() as connection:
            results = connection.execute(
                text(
                    "SELECT COUNT(*) FROM results JOIN studies ON results.study_id = studies.id "
                    "WHERE studies.study_instance_uid = :uid"
                ),
                {"uid": study},
            ).scalar_one()
            instances = connection.execute(
                text(
                    "SELECT instances.sop_instance_uid FROM instances JOIN studies "
                    "ON instances.study_id = studies.id WHERE studies.study_instance_uid = :uid"
                ),
                {"uid": study},
            ).scalars()
            return int(results), set(instances)
    finally:
        record.close()


def _queue(url: str) -> list[Any]:
    """The shared grouping state: one row per study waiting or being analysed."""
    from sqlalchemy import text

    record = Record(url)
    try:
        with record.engine.connect() as connection:
            return list(connection.execute(text("SELECT study_key, claimed_by FROM dimse_studies")))
    finally:
        record.close()


def _analyses(*listeners: Listener, event: str = "imaging_result") -> int:
    """How many times the listeners analysed a study: ``imaging_result`` log events (one per filing, whether
    the record filed a new result or answered with the one it holds), or ``dimse_analysis`` (one per claim
    of a study, whatever came of it)."""
    count = 0
    for listener in listeners:
        log = listener.home / "logs" / "listener.jsonl"
        lines = log.read_text("utf-8").splitlines() if log.exists() else []
        count += sum(1 for line in lines if line.startswith("{") and json.loads(line).get("event") == event)
    return count


def _settled(url: str, spool: Path, study: str) -> bool:
    return not _queue(url) and not any((spool / "incoming").glob(f"*{study}"))


def _blocking_file(spool: Path, study: str) -> Path:
    """A FIFO among a study's files: the instance that claims the study blocks reading it, mid-analysis,
    its lease renewed meanwhile, until the test opens the other end."""
    folder = spool / "incoming" / study_key(study, TEST_AET)
    folder.mkdir(parents=True)
    fifo = folder / "0-blocks-the-reader.dcm"
    os.mkfifo(fifo)
    return fifo


def _claimant(record_url: str, a: Listener, b: Listener) -> tuple[Listener, Listener]:
    """Wait for one instance to claim the (only) study; return it and the other one."""

    def owner() -> str | None:
        rows = [row for row in _queue(record_url) if row.claimed_by]
        return rows[0].claimed_by if rows else None

    claimed_by = wait_until(owner, timeout=90, what="an instance to claim the study")
    pid = int(claimed_by.split("-")[-2])  # instance names end with the process id and a random suffix
    holder = {listener.process.pid: listener for listener in (a, b) if listener.process is not None}[pid]
    return holder, (b if holder is a else a)


def test_a_study_split_between_two_listeners_is_analysed_once_with_every_instance(
    pair: tuple[Listener, Listener, Path], record_url: str
) -> None:
    a, b, spool = pair
    study = new_uid()
    sent = _send_interleaved(study, (a.port, b.port))

    wait_until(lambda: _filed(record_url, study)[0] > 0, timeout=90, what="the split study's result")
    wait_until(
        lambda: _settled(record_url, spool, study), timeout=60, what="the shared spool and queue to empty"
    )
    results, instances = _filed(record_url, study)
    assert results == 1
    assert instances == set(sent)
    assert _analyses(a, b) == 1  # not twice: the record's idempotency would hide a second filing


def test_a_claim_held_by_a_killed_listener_is_taken_over_after_its_lease(
    pair: tuple[Listener, Listener, Path], record_url: str
) -> None:
    a, b, spool = pair
    study = new_uid()
    # A FIFO among the study's files: whichever instance claims the study blocks reading it, mid-analysis,
    # while its lease keeps being renewed. It is the one killed.
    fifo = _blocking_file(spool, study)
    sent = _send_interleaved(study, (a.port, b.port))
    killed, survivor = _claimant(record_url, a, b)
    # The blocked reader keeps its open FIFO; the survivor will find only the instances.
    fifo.unlink()
    assert killed.process is not None
    killed.process.send_signal(signal.SIGKILL)
    killed.process.wait(timeout=30)
    killed.process = None

    wait_until(
        lambda: _filed(record_url, study)[0] > 0, timeout=120, what="the survivor to take the study over"
    )
    wait_until(
        lambda: _settled(record_url, spool, study), timeout=60, what="the shared spool and queue to empty"
    )
    results, instances = _filed(record_url, study)
    assert results == 1
    assert instances == set(sent)
    assert _analyses(a, b) == 1  # not twice: the record's idempotency would hide a second filing
    assert survivor.process is not None and survivor.process.poll() is None


def test_an_instance_arriving_at_the_other_listener_during_the_analysis_makes_the_study_analysed_again(
    pair: tuple[Listener, Listener, Path], record_url: str
) -> None:
    a, b, spool = pair
    study = new_uid()
    fifo = _blocking_file(spool, study)
    sent = _send_interleaved(study, (a.port, b.port), views=("PA", "LATERAL"))
    holder, other = _claimant(record_url, a, b)
    # The study grows on the other instance while the holder is analysing what it claimed.
    sent += _send_interleaved(study, (other.port,), views=("PA",), seed=10)

    def unblocked() -> int | None:
        try:  # succeeds once the holder has the FIFO open for reading
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return None

    descriptor = wait_until(unblocked, timeout=60, what="the holder to read the study's files")
    fifo.unlink()
    os.close(descriptor)  # the holder reads an empty file: that analysis of the claimed files ends

    wait_until(lambda: _filed(record_url, study)[0] > 0, timeout=120, what="the grown study's result")
    wait_until(
        lambda: _settled(record_url, spool, study), timeout=60, what="the shared spool and queue to empty"
    )
    results, instances = _filed(record_url, study)
    # Analysed again after the growth, with every instance from both listeners; nothing left behind.
    assert results == 1
    assert instances == set(sent)
    assert _analyses(a, b, event="dimse_analysis") == 2


def test_failed_attempts_are_counted_across_listeners_and_the_study_ends_in_the_shared_dead_letters(
    record_url: str, tmp_path: Path
) -> None:
    require_tools()
    attempts = 3
    failing = {"DXASSIST_DIMSE_MAX_ATTEMPTS": str(attempts), "DXASSIST_DIMSE_RETRY_SECONDS": "0.2"}
    with _running_pair(tmp_path, record_url, models=None, env=failing) as (a, b, spool):
        study = new_uid()
        _send_interleaved(study, (a.port, b.port), views=("PA", "LATERAL"))

        def dead_letters() -> list[dict[str, Any]]:
            # An operator's command on any host with the listener's settings.
            env = {k: v for k, v in os.environ.items() if not k.startswith(("DXASSIST_", "MLFLOW_"))}
            env.update({**_shared_env(record_url, spool), "DXASSIST_HOME": str(tmp_path / "operator")})
            done = subprocess.run(
                [str(Path(sys.executable).with_name("dxassist")), "dead-letter", "list", "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            return [item for item in json.loads(done.stdout) if item["kind"] == "study"]

        (dead,) = wait_until(dead_letters, timeout=120, what="the failing study in the shared dead letters")
        assert dead["subject"] == study
        assert dead["attempts"] == attempts
        wait_until(lambda: _settled(record_url, spool, study), timeout=60, what="the shared queue to empty")
        # The attempts were counted in the record, shared: both instances together tried it `attempts` times.
        assert _analyses(a, b, event="dimse_analysis") == attempts
        assert (
            sorted(
                path.name
                for path in (spool / "dead-letter" / "studies" / study_key(study, TEST_AET)).glob("*.dcm")
            )
            != []
        )


def test_a_spool_left_by_stopped_listeners_is_analysed_once_when_instances_start(
    models: Path, record_url: str, tmp_path: Path
) -> None:
    # Left by listeners that stopped before recording anything (or by one listener moved to the shared
    # spool): folders in incoming/ that the record does not know.
    study = new_uid()
    folder = tmp_path / "shared" / "spool" / "incoming" / study
    folder.mkdir(parents=True)
    sent = []
    for n, view in enumerate(("PA", "LATERAL")):
        sop = new_uid()
        (folder / f"{sop}.dcm").write_bytes(chest_cr(study=study, sop=sop, view=view, seed=20 + n))
        sent.append(sop)
    (folder / "sender.txt").write_text(TEST_AET, "ascii")
    with _running_pair(tmp_path, record_url, models=models) as (a, b, spool):
        wait_until(lambda: _filed(record_url, study)[0] > 0, timeout=90, what="the recovered study's result")
        wait_until(
            lambda: _settled(record_url, spool, study), timeout=60, what="the shared spool and queue to empty"
        )
        results, instances = _filed(record_url, study)
        assert results == 1
        assert instances == set(sent)
        assert _analyses(a, b) == 1


def test_the_receiving_folders_of_instances_gone_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    from inference.dimse._listener import _sweep_spool

    receiving = tmp_path / "receiving"
    long_ago = 1_000_000_000  # 2001: far past any idle period
    own, gone, busy, stale = (receiving / name for name in ("own", "gone", "busy", "stale"))
    for folder in (own, gone, busy, stale):
        folder.mkdir(parents=True)
    (busy / "transfer-in-progress").write_bytes(b"x")
    (stale / "transfer-cut-off").write_bytes(b"x")
    os.utime(stale / "transfer-cut-off", (long_ago, long_ago))
    for folder in (own, gone, busy, stale):
        os.utime(folder, (long_ago, long_ago))

    _sweep_spool(receiving, own=own)

    assert own.is_dir()  # this instance's, whatever its age
    assert not gone.exists()  # an instance gone long ago, nothing left in it
    assert (busy / "transfer-in-progress").exists()  # a transfer in progress on another live instance
    assert not (stale / "transfer-cut-off").exists()  # a transfer that stopped long ago
