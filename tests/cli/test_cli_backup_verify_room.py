"""`backup verify` of a plain backup checks the record's audit trail on a private copy made in the temporary
folder (the bytes it hashed: others may write the backup medium). Without room there it copied until the
disk was full (whatever else writes there, the server's own files when it is the host's /tmp, then failed
too) before it said that the copy failed. It now refuses before copying anything, saying how much room the
copy needs and how much is free.

The temporary folder is a small tmpfs mounted in a mount namespace of the command's own (``unshare``:
root, as ``.ci/run`` runs the suite), so nothing outside it sees it.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, dxassist_env, plain_backup


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plain_backup(tmp_path_factory.mktemp("verify-room"))


def test_verify_without_room_for_the_records_copy_says_how_much_it_needs(plain: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    script = (
        f'mount -t tmpfs -o size=64k tmpfs "{small}" && '
        f'TMPDIR="{small}" exec "{DXASSIST}" backup verify "{plain}"'
    )
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        env=dxassist_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    files = json.loads((plain / "manifest.json").read_text(encoding="utf-8"))["files"]
    assert files["record.db"]["size"] > 64 << 10  # the copy cannot fit
    said = re.search(r"needs (\d+) bytes there and (\d+) bytes are free", done.stderr)
    assert said is not None, done.stderr
    assert int(said.group(1)) >= files["record.db"]["size"] > int(said.group(2))
    assert "Set TMPDIR to a folder with room for it" in done.stderr
