"""The DIMSE listener's memory stays bounded whatever instance a sender pushes (docs/security.md).

The listener runs with the default limits (256 MiB per instance, 24 Mi pixels). dcmtk's ``storescu`` sends
a ~700 MB instance (refused while it is being received: the association is aborted once the limit is
passed, and nothing of it is kept) a 256 MiB one with 134 M pixels (under the size limit,
refused for its pixel count, 0xA700), and the largest accepted one (5016 x 5016, 16 bits, the most pixels
``DXASSIST_MAX_PIXELS`` accepts; received, decoded, analysed and filed). The listener's peak resident
memory (``VmHWM`` in ``/proc``) stays under 600 MB.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import tiny_models
from _pacs_dicom import new_uid, write_large_cr
from _pacs_harness import LISTENER_AET, TEST_AET, Listener, dcmtk, free_port, wait_until

from inference.config import LimitsSettings
from inference.record import Record

pytestmark = pytest.mark.integration

LIMIT_MB = 600
# The largest square image the default DXASSIST_MAX_PIXELS (24 Mi) accepts: 5016 x 5016, 16 bits (48 MiB).
SIDE = math.isqrt(LimitsSettings.model_fields["max_pixels"].default)
DEFAULT_MAX_INSTANCE_BYTES = 256 * 1024 * 1024


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a process (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


def _send(path: Path, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [dcmtk("storescu"), "-aet", TEST_AET, "-aec", LISTENER_AET, "127.0.0.1", str(port), str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_the_listener_stays_under_600_mb_for_any_instance(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    listener = Listener(
        home, free_port(), [], extra_env={"DXASSIST_MAX_INSTANCE_BYTES": str(DEFAULT_MAX_INSTANCE_BYTES)}
    )
    listener.start()
    try:
        assert listener.process is not None
        pid = listener.process.pid

        huge = write_large_cr(tmp_path / "huge.dcm", side=18_700)  # 699 MB
        assert huge.stat().st_size > 690_000_000
        refused = _send(huge, listener.port)
        huge.unlink()
        assert refused.returncode != 0 or "0xa700" in (refused.stdout + refused.stderr).lower()
        assert not any((home / "incoming").iterdir())  # nothing of it is kept
        # The largest file under the size limit, refused for its pixel count (read, never decoded).
        over = write_large_cr(tmp_path / "over.dcm", side=11_585)  # 256 MiB, 134 M pixels
        _send(over, listener.port)
        over.unlink()
        assert not any((home / "incoming").iterdir())  # refused (0xA700), not stored
        after_refused = peak_rss_mb(pid)

        study = new_uid()
        largest = write_large_cr(tmp_path / "largest.dcm", side=SIDE, study=study)
        accepted = _send(largest, listener.port)
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        after_receipt = peak_rss_mb(pid)

        def filed() -> bool:
            record = Record(listener.record_url)
            try:
                return record.results.latest_for_study(study_instance_uid=study) is not None
            finally:
                record.close()

        wait_until(filed, timeout=300, interval=1.0, what="the largest accepted instance to be analysed")
        peak = peak_rss_mb(pid)
        print(
            f"listener peak RSS: {after_refused:.0f} MB after the 699 MB instance, "
            f"{after_receipt:.0f} MB after receiving the largest accepted one, {peak:.0f} MB analysing it"
        )
        assert after_refused < LIMIT_MB
        assert peak < LIMIT_MB
        assert not any((home / "receiving").iterdir())
    finally:
        listener.stop()
