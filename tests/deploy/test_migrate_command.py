"""``dxassist migrate``: what the Kubernetes migration Job runs before a release rolls out."""

from __future__ import annotations

import subprocess
from pathlib import Path

from _dxassist_cli import DXASSIST, dxassist_env
from sqlalchemy import create_engine, text


def test_migrate_brings_a_new_record_to_the_newest_revision_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for _ in range(2):
        done = subprocess.run(
            [str(DXASSIST), "migrate"], env=dxassist_env(home), capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "newest revision" in done.stdout
    engine = create_engine(f"sqlite:///{home / 'record.db'}")
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            assert connection.execute(text("SELECT count(*) FROM outbox")).scalar_one() == 0
    finally:
        engine.dispose()
    heads = sorted(
        (Path(__file__).resolve().parents[2] / "inference/record/migrations/versions").glob("0*.py")
    )
    assert versions == [heads[-1].name.split("_")[0]]


def test_migrate_says_so_when_the_database_cannot_be_reached(tmp_path: Path) -> None:
    env = dxassist_env(tmp_path / "home")
    env["DXASSIST_DATABASE_URL"] = "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"
    done = subprocess.run([str(DXASSIST), "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "cannot be opened" in done.stderr
    assert "Traceback" not in done.stderr
