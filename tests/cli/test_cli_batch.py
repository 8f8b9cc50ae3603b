"""``dxassist batch score``: a generated archive scored on a local two-worker Dask cluster into the record.

The real console script runs in a subprocess (its own session, so the whole run, Dask workers included,
can be killed at once as a dying machine would). One flow: a run killed mid-way, resumed without
duplicates, a re-run that files nothing new, then a re-scoring with another model version.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from _batch_archive import PATIENT_NAME, write_archive
from _dxassist_cli import DXASSIST, REPO, dxassist_env

pytestmark = [pytest.mark.slow, pytest.mark.integration]

STUDIES = 30


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    root = tmp_path_factory.mktemp("archive")
    scorable, refused = write_archive(root, STUDIES)
    return root, scorable, refused


def _env(home: Path) -> dict[str, str]:
    env = dxassist_env(home)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _command(archive: Path, *extra: str, facility: str | None = "F1") -> list[str]:
    owner = ["--facility", facility] if facility is not None else []
    return [str(DXASSIST), "batch", "score", str(archive), *owner, "--workers", "2", *extra]


def _score(
    home: Path, archive: Path, *extra: str, facility: str | None = "F1", **settings: str
) -> tuple[dict[str, object], str]:
    proc = subprocess.run(
        _command(archive, "--json", *extra, facility=facility),
        env=_env(home) | settings,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in (proc.stdout, proc.stderr):
        assert PATIENT_NAME.split("^")[0] not in text
        assert "IPP-BATCH" not in text
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _batch_results(home: Path) -> list[tuple[str, str, str]]:
    """(study UID, model version, source) of every batch result in the record."""
    with sqlite3.connect(home / "record.db") as db:
        return db.execute(
            "SELECT s.study_instance_uid, r.model_version, r.source FROM results r "
            "JOIN studies s ON s.id = r.study_id WHERE r.source = 'batch'"
        ).fetchall()


def _filed(home: Path) -> int:
    try:
        return len(_batch_results(home))
    except sqlite3.Error:  # not created yet, or locked by a writer for a moment
        return 0


def test_interrupted_run_resumes_without_duplicates(home: Path, archive: tuple[Path, int, int]) -> None:
    root, scorable, refused = archive
    proc = subprocess.Popen(
        _command(root),
        env=_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while _filed(home) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        # Frozen the moment its first results are filed (a whole run takes well under a second on a
        # fast machine, so waiting for more could see it finish): what is filed now is all it filed.
        os.killpg(proc.pid, signal.SIGSTOP)
        before = _filed(home)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Dask workers, mid-study
        proc.wait(timeout=60)
    assert 1 <= before < scorable

    summary, stderr = _score(home, root)
    assert summary["studies"] == STUDIES
    assert summary["unreadable_files"] == 1
    assert summary["workers"] == 2
    assert summary["refused"] == {"unsupported_modality": refused}
    assert summary["failed"] == {}
    assert summary["skipped"] >= before
    assert summary["scored"] + summary["skipped"] == scorable
    assert f"{STUDIES}/{STUDIES} studies" in stderr  # the progress bar reached the end
    rows = _batch_results(home)
    studies = [row[0] for row in rows]
    assert len(studies) == scorable == len(set(studies))  # every scorable study once, none twice

    # The facility from the setting instead of --facility: the same owner, so every study is skipped
    # (another facility would have been refused with resend_conflict).
    again, _ = _score(home, root, facility=None, DXASSIST_BATCH_FACILITY="F1")
    assert (again["scored"], again["skipped"]) == (0, scorable)
    assert len(_batch_results(home)) == scorable

    audit = subprocess.run(
        [str(DXASSIST), "audit", "verify"], env=_env(home), capture_output=True, text=True, check=False
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_model_version_rescores_the_archive(home: Path, archive: tuple[Path, int, int]) -> None:
    root, scorable, _ = archive
    before = _batch_entries(home)
    summary, _ = _score(home, root, "--model-version", "2")
    assert summary["model"] == "cxr-findings 2"
    assert summary["scored"] == scorable
    # The run's id (in its summary) is on every audit entry its workers wrote, a filing per study among
    # them, and on no entry of an earlier run.
    run_id = str(summary["run_id"])
    assert run_id.startswith("batch-")
    entries = _batch_entries(home)[len(before) :]
    assert entries and {request_id for request_id, _action in entries} == {run_id}
    assert sum(action == "studies:submit" for _id, action in entries) >= scorable
    assert run_id not in {request_id for request_id, _action in before}
    rows = _batch_results(home)
    assert sorted({row[1] for row in rows}) == ["1", "2"]
    assert sum(row[1] == "2" for row in rows) == scorable


def _batch_entries(home: Path) -> list[tuple[str | None, str]]:
    """(request_id, action) of the audit entries written as the batch runs' subject, in order."""
    if not (home / "record.db").exists():  # this test run alone: no earlier run made the record
        return []
    with sqlite3.connect(home / "record.db") as db:
        return db.execute(
            "SELECT request_id, action FROM audit_events WHERE subject = 'batch' ORDER BY seq"
        ).fetchall()


def test_unknown_model_version_fails_before_any_work(home: Path, archive: tuple[Path, int, int]) -> None:
    proc = subprocess.run(
        _command(archive[0], "--model-version", "9"),
        env=_env(home),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "dxassist: The registry has no version 9 of cxr-findings."


def test_missing_folder_is_one_line(home: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        _command(tmp_path / "nowhere"), env=_env(home), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"dxassist: The archive folder {tmp_path / 'nowhere'} does not exist or is not a folder."
    )


def test_missing_extra_is_one_line(home: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "no-dask"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['distributed'] = None\n")
    env = _env(home)
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env["PYTHONPATH"]])
    proc = subprocess.run(_command(tmp_path), env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "dxassist: Batch scoring needs Dask distributed, not installed here: pip install 'dxassist[batch]'."
    )
