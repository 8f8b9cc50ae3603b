"""A log file that cannot be written (a full disk) is said once, not as a traceback for every line.

Found by filling the disk under a serving `DXASSIST_HOME`: each log line then printed logging's
"--- Logging error ---" and a traceback on stderr, which is where a platform reads the server's log.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from inference.observability import configure_logging

FULL = Path("/dev/full")  # every write fails with ENOSPC, as on a full disk


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_dxassist_json_handler", False)]:
        root.removeHandler(handler)
        handler.close()


@pytest.mark.parametrize("max_bytes", [0, 50 * 1024 * 1024], ids=["no-rotation", "rotation"])
def test_a_full_disk_is_one_line_on_the_stream_and_every_line_still_reaches_it(
    max_bytes: int, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, log_file=FULL, max_bytes=max_bytes)
    logger = logging.getLogger("inference.api.access")
    for n in range(300):
        logger.info("request", extra={"event": "request", "status": 200, "duration_ms": float(n)})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests = [line for line in lines if line.get("event") == "request"]
    failures = [line for line in lines if line.get("event") == "log_file_failed"]
    assert len(requests) == 300  # the stream has every line
    assert len(failures) == 1, failures  # said once (again at most once a minute)
    assert failures[0]["level"] == "ERROR"
    assert "No space left on device" in failures[0]["message"]
    assert failures[0]["lines_lost"] >= 1
    printed = capsys.readouterr()
    assert "Logging error" not in printed.err + printed.out
    assert "Traceback" not in printed.err + printed.out
