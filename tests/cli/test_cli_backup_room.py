"""`dxassist backup create` on a disk too small for it: refused before anything is written, naming how much
it needs; the copy a killed sealed backup left staged in the home is removed by the next. A sealed backup
is first staged in the home, so it needs its size twice on the live disk when DEST shares it; filling
that disk would stop the running server's own writes.

The home holds a sparse model file larger than the free space (its blocks are not on disk). The command
runs under a file-size limit (RLIMIT_FSIZE), so that a command that copied it anyway stops at 64 MiB
with EFBIG instead of filling the test machine's disk.
"""

from __future__ import annotations

import fcntl
import os
import re
import resource
import shutil
import subprocess
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, dxassist_env

_WRITE_LIMIT = 64 << 20


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (_WRITE_LIMIT, _WRITE_LIMIT))


def _dxassist(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DXASSIST), *args],
        env=dxassist_env(home),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        preexec_fn=_limited,  # noqa: PLW1509  (only a resource limit; no threads in the child yet)
    )


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_a_backup_the_free_space_cannot_hold_is_refused_before_anything_is_written(
    tmp_path: Path, sealed: bool
) -> None:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    free = shutil.disk_usage(tmp_path).free
    huge = home / "models" / "champion.onnx"
    with open(huge, "wb") as handle:
        handle.truncate(free + (1 << 30))  # sparse: larger than the disk's free space, no block used
    args = ["backup", "create", str(tmp_path / "backup")]
    if sealed:
        keygen = _dxassist(home, "backup", "keygen", str(tmp_path / "custodian"))
        assert keygen.returncode == 0, keygen.stderr
        args += ["--encrypt-to", str(tmp_path / "custodian.pub")]

    refused = _dxassist(home, *args)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = re.search(
        r"needs? about ([\d.]+) GiB on the file system of .*; ([\d.]+) GiB are free", refused.stderr
    )
    assert said is not None, refused.stderr
    needed = float(said.group(1)) * (1 << 30)
    # Once for the backup, and (sealed, DEST on the same disk) once more for the copy staged in the home.
    copies = 2 if sealed else 1
    assert needed >= copies * huge.stat().st_size - (1 << 27), refused.stderr
    assert ("staged in the home" in refused.stderr) == sealed
    # Nothing was written: no DEST, no staged copy in the home.
    assert not (tmp_path / "backup").exists()
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".")) == []


def test_the_plain_copy_a_killed_sealed_backup_left_in_the_home_is_removed_by_the_next(
    tmp_path: Path,
) -> None:
    # `backup create --encrypt-to` killed (-9) while staging leaves a plain copy of the home in the home:
    # the keys and the record in clear, and the room of the home taken twice on the live disk.
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "champion.onnx").write_bytes(b"\0" * 4096)
    left = home / ".backup-staging-k1ll3d" / ".partial" / "keys"
    left.mkdir(parents=True, mode=0o700)
    (left / "token-signing-ed25519.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----")
    # One another `backup create` is staging right now (it holds its folder locked): that one stays.
    busy = home / ".backup-staging-running"
    busy.mkdir(mode=0o700)
    keygen = _dxassist(home, "backup", "keygen", str(tmp_path / "custodian"))
    assert keygen.returncode == 0, keygen.stderr

    held = os.open(busy, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        made = _dxassist(
            home,
            "backup",
            "create",
            str(tmp_path / "backup"),
            "--encrypt-to",
            str(tmp_path / "custodian.pub"),
        )
    finally:
        os.close(held)

    assert made.returncode == 0, made.stdout + made.stderr
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".backup-staging-")) == [busy.name]
