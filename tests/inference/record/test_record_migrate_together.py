"""Processes started together on a new SQLite record take turns migrating it.

``serve`` and ``listen`` started by one unit file (or two workers) on a new home each ran the migrations at
once: all but one failed to start with "database is locked" (a transaction that read the schema before
creating its tables gets SQLite's busy error at once, its busy timeout notwithstanding). Migrating now
takes the writers' turn, so the later ones find the schema at head.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[3]
_MIGRATE = """
import sys, time
from inference.record import Record
start = float(sys.argv[2])
while time.time() < start:
    pass
record = Record(sys.argv[1])
record.migrate()
record.close()
"""


def test_four_processes_migrating_a_new_record_at_once_all_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'record.db'}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    start = time.time() + 6  # every process imported and waiting when the clock strikes
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE, url, str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in processes]
    assert [code for code, _ in outcomes] == [0, 0, 0, 0], [err[-500:] for _, err in outcomes]
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            revisions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    finally:
        engine.dispose()
    heads = sorted(
        p.name.split("_", 1)[0] for p in (REPO / "inference/record/migrations/versions").glob("0*.py")
    )
    assert revisions == [heads[-1]]
