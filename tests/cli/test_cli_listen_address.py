"""``dxassist listen`` whose DICOM or metrics port is taken stops at once with the reason and exit status 2,
not a traceback (the real console script)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, dxassist_env


@pytest.mark.parametrize("flag", ["--metrics-port", "--port"])
def test_a_port_in_use_is_named_with_the_reason(tmp_path: Path, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = ["--port", "0"] if flag == "--metrics-port" else []
        done = subprocess.run(
            [str(DXASSIST), "listen", *others, flag, str(port)],
            env=dxassist_env(tmp_path / "home"),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("dxassist: ") and f"127.0.0.1:{port}" in last and "in use" in last, last
    assert "Traceback" not in done.stderr
