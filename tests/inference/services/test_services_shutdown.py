"""``open_context`` closes every engine even when one of them fails to stop.

A model host that raised while stopping used to skip the worker pool's and the record's close: the
record's connections stayed open (SQLite's write-ahead log not copied into the database file) and the
audit anchor's thread was not waited for. No input makes the host's ``stop`` fail on demand, so the test
wraps the real one: it stops the host, then raises, as a failing step would.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import tiny_models

from inference.config import Settings
from inference.record import HeadAnchor, Record
from inference.services import open_context
from inference.services._audit_trail import AuditedModelHost


class _StopFailed(OSError):
    pass


def test_the_record_and_the_pool_are_closed_when_the_model_host_fails_to_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path, database_url=None, mlflow_tracking_uri=None, model_watch_seconds=0)
    tiny_models.seed_both(settings.model_cache, tmp_path / "build")
    real_stop = AuditedModelHost.stop

    async def failing_stop(self: AuditedModelHost) -> None:
        await real_stop(self)
        raise _StopFailed("synthetic failure")

    monkeypatch.setattr(AuditedModelHost, "stop", failing_stop)

    engines: dict[str, Any] = {}

    async def main() -> None:
        async with open_context(settings, fetch=tiny_models.cache_fetcher(settings.model_cache)) as ctx:
            engines["workers"] = ctx.workers

    with caplog.at_level(logging.ERROR, logger="inference"), pytest.raises(_StopFailed):
        asyncio.run(main())

    # The worker pool was shut down: it takes no more work.
    with pytest.raises(RuntimeError, match="shutdown"):
        asyncio.run(engines["workers"].run(int, "1"))
    # The record was closed: its connections are gone, so SQLite copied its log into the database file.
    database = Path(settings.record_url.removeprefix("sqlite:///"))
    assert database.exists() and not Path(f"{database}-wal").exists()
    # What the process committed (the models put in service) is anchored outside the database.
    reopened = Record(settings.record_url, anchor=HeadAnchor(tmp_path))
    try:
        report = reopened.audit.verify()
        assert report.ok and report.head_seq > 0 and report.anchored_seq == report.head_seq
    finally:
        reopened.close()
    said = [r for r in caplog.records if getattr(r, "event", None) == "shutdown_step_failed"]
    assert [r.getMessage() for r in said] == [
        "The shutdown step host.stop failed; the next steps run all the same."
    ]
