"""The SQLite record's checkpoint thread starts on the first commit and stops with the record, whichever
comes first: a server shut down while its first commit starts the thread must close cleanly (it raised
"cannot join thread before it is started" when stop() saw the thread between its creation and start)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import create_engine

from inference.record import _database
from inference.record._database import _Checkpointer


def test_a_stop_while_the_first_commit_starts_the_thread_closes_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created = threading.Event()
    plain = threading.Thread

    class SlowToStart(plain):
        """A thread whose start() takes a while: the window in which a stop() used to fail."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.set()

        def start(self) -> None:
            time.sleep(0.3)
            super().start()

    monkeypatch.setattr(_database.threading, "Thread", SlowToStart)
    engine = create_engine("sqlite://")
    try:
        checkpointer = _Checkpointer(engine)
        failures: list[BaseException] = []

        def commit() -> None:
            try:
                checkpointer.committed()
            except BaseException as e:  # noqa: BLE001 - the test reports whatever it raised
                failures.append(e)

        committer = plain(target=commit)
        committer.start()
        assert created.wait(timeout=10)
        checkpointer.stop()  # the checkpoint thread exists, not started yet
        committer.join(timeout=10)
        assert failures == []
        thread = checkpointer._thread
        assert thread is not None
        thread.join(timeout=10)
        assert not thread.is_alive()
        checkpointer.committed()  # stopped: a later commit starts nothing
        assert checkpointer._thread is thread
    finally:
        engine.dispose()
