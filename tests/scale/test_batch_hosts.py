"""``dxassist batch score --scheduler``: a Dask scheduler and two workers on separate namespace hosts.

Four hosts built by :mod:`_lab`: the scheduler, two workers (``dask worker``, each opening the dxassist
engines from its own environment) and the driver running the command. The record is the SQLite file of
one shared ``DXASSIST_HOME`` (the hosts share the file system, not the network), as a shared PostgreSQL
would be. A generated archive of 500 studies is scored; one worker's host dies mid-run: Dask hands its
studies to the other worker, the run ends with every scorable study filed exactly once, and the
summary names both workers.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, REPO, dxassist_env
from _lab import Lab
from _loopback import wait_until
from tiny_models import seed_both

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from _batch_archive import PATIENT_NAME, write_archive  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.integration]

STUDIES = 500
DASK = Path(sys.executable).with_name("dask")


def _filed(home: Path) -> int:
    try:
        with sqlite3.connect(home / "record.db", timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM results WHERE source = 'batch'").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_workers_on_separate_hosts_one_dies_mid_run(tmp_path: Path) -> None:
    missing = [tool for tool in ("ip",) if shutil.which(tool) is None]
    assert os.geteuid() == 0 and not missing, "The namespace hosts need root and iproute2 (.ci/run)."
    home = tmp_path / "home"
    seed_both(home / "models", tmp_path / "build")
    archive = tmp_path / "archive"
    scorable, refused = write_archive(archive, STUDIES)
    env = dxassist_env(home)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    logs = tmp_path / "logs"
    logs.mkdir()

    with Lab() as lab:
        scheduler = lab.add_host("sched", 10)
        workers = [lab.add_host("w1", 11), lab.add_host("w2", 12)]
        driver = lab.add_host("driver", 13)
        address = f"tcp://{scheduler.address}:8786"
        scheduler.popen(
            [str(DASK), "scheduler", "--host", scheduler.address, "--port", "8786", "--no-dashboard"],
            env=env,
            log=logs / "scheduler.log",
        )
        for worker in workers:
            worker.popen(
                [str(DASK), "worker", address, "--host", worker.address, "--nthreads", "1", "--no-dashboard"],
                env=env,
                log=logs / f"{worker.name}.log",
            )
        wait_until(
            lambda: (logs / "scheduler.log").read_text().count("Register worker") >= 2,
            timeout=180,
            what="two Dask workers registered with the scheduler",
        )
        run = driver.popen(
            [str(DXASSIST), "batch", "score", str(archive), "--facility", "F1", "--scheduler", address,
             "--json", "--no-progress"],
            env=env,
            log=logs / "driver.log",
        )  # fmt: skip
        wait_until(lambda: _filed(home) >= 40 or run.poll() is not None, timeout=600, what="40 studies filed")
        assert run.poll() is None, (logs / "driver.log").read_text()[-3000:]
        workers[1].kill()  # a worker host dies with studies in flight
        assert run.wait(timeout=900) == 0, (logs / "driver.log").read_text()[-3000:]

    output = (logs / "driver.log").read_text()
    assert PATIENT_NAME.split("^")[0] not in output and "IPP-BATCH" not in output
    summary = json.loads(output.strip().splitlines()[-1])
    assert summary["workers"] == 2
    assert summary["refused"] == {"unsupported_modality": refused}
    assert summary["failed"] == {}
    assert summary["scored"] + summary["skipped"] == scorable
    by_host = {addr.split("://")[1].split(":")[0]: n for addr, n in summary["per_worker"].items()}
    assert by_host.get(workers[0].address, 0) > 0 and by_host.get(workers[1].address, 0) > 0, by_host
    with sqlite3.connect(home / "record.db") as db:
        rows = db.execute(
            "SELECT s.study_instance_uid FROM results r JOIN studies s ON s.id = r.study_id "
            "WHERE r.source = 'batch'"
        ).fetchall()
    assert len(rows) == scorable == len(set(rows))  # every scorable study filed once, none twice
    print(
        f"\nbatch on namespace hosts: {STUDIES} studies, scored {summary['scored']}, "
        f"skipped {summary['skipped']} (filed by the dead worker before it died), refused "
        f"{sum(summary['refused'].values())}, per worker {summary['per_worker']}, "
        f"{summary['scoring_seconds']:.1f} s scoring"
    )
