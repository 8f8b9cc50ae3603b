"""``dxassist listen`` whose DICOM or metrics port is taken, or whose TLS files cannot be loaded, stops at
once with the reason and exit status 2, not a traceback (the real console script)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, dxassist_env


def _listen(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``dxassist listen ARGS`` run to its end (it is expected to stop at start)."""
    return subprocess.run(
        [str(DXASSIST), "listen", *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.mark.parametrize("flag", ["--metrics-port", "--port"])
def test_a_port_in_use_is_named_with_the_reason(tmp_path: Path, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = ["--port", "0"] if flag == "--metrics-port" else []
        done = _listen(dxassist_env(tmp_path / "home"), *others, flag, str(port))
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("dxassist: ") and f"127.0.0.1:{port}" in last and "in use" in last, last
    assert "Traceback" not in done.stderr


def test_tls_files_that_cannot_be_loaded_are_named_before_anything_starts(tmp_path: Path) -> None:
    env = dxassist_env(tmp_path / "home") | {
        "DXASSIST_DIMSE_TLS_CERTFILE": str(tmp_path / "missing.pem"),
        "DXASSIST_DIMSE_TLS_KEYFILE": str(tmp_path / "missing.key"),
    }
    done = _listen(env, "--port", "0")
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "TLS certificate, key or authorities cannot be loaded" in last and "No such file" in last, last
    assert "Traceback" not in done.stderr
    # Half a configuration is refused as such.
    env.pop("DXASSIST_DIMSE_TLS_KEYFILE")
    done = _listen(env, "--port", "0")
    assert done.returncode != 0 and "go together" in done.stderr, done.stderr[-2000:]


def test_a_reserve_larger_than_the_spools_disk_is_refused_at_start(tmp_path: Path) -> None:
    # Every C-STORE would be answered 0xA700 (storage_full) for ever, and the PACS would retry without end.
    env = dxassist_env(tmp_path / "home") | {"DXASSIST_DIMSE_MIN_FREE_BYTES": str(1 << 62)}
    done = _listen(env, "--port", "0")
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "DXASSIST_DIMSE_MIN_FREE_BYTES" in last and "storage_full" in last, last
    assert "Traceback" not in done.stderr
