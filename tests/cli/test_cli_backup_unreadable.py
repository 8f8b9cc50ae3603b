"""A file of the backup that cannot be read (its mode, a medium's error): `backup restore` and `backup
verify` name that file of the backup (its relative name) as unreadable, as a problem of the backup: exit
1, nothing restored. Before, `restore` said the new home "could not be written" (exit 2), sending the
operator to look at the wrong disk, and `verify` ended on a traceback.

The real console script on a backup it made; the file is made unreadable by its mode (for root, which
reads any file, the command runs without the capabilities that override a file's mode).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, dxassist_env, plain_backup


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain backup of a home whose record holds an audit entry."""
    return plain_backup(tmp_path_factory.mktemp("unreadable"))


def _as_a_reader_bound_by_modes(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dxassist ARGS``; as root, without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (modes then apply)."""
    bound = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    return subprocess.run(
        [*bound, str(DXASSIST), *args],
        env=dxassist_env(home),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.fixture
def unreadable(plain: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the backup, one of whose keys cannot be read; that key's name in the backup."""
    backup = tmp_path / "backup"
    subprocess.run(["cp", "-a", str(plain), str(backup)], check=True)
    key = sorted(p for p in (backup / "keys").iterdir() if p.is_file() and p.name != "audit-anchor.key")[0]
    key.chmod(0)
    return backup, key.relative_to(backup).as_posix()


def test_restore_names_the_backup_file_that_cannot_be_read(
    unreadable: tuple[Path, str], tmp_path: Path
) -> None:
    backup, name = unreadable
    home = tmp_path / "restored"
    done = _as_a_reader_bound_by_modes(tmp_path / "elsewhere", "backup", "restore", str(backup), str(home))
    said = done.stdout + done.stderr
    assert f"{name}: cannot be read (Permission denied)" in said, said
    assert "could not be written" not in said and str(backup) + "/" not in said, said
    assert done.returncode == 1, said
    assert not home.exists()
    assert [p.name for p in tmp_path.iterdir() if "restoring" in p.name] == []


def test_verify_names_the_backup_file_that_cannot_be_read(
    unreadable: tuple[Path, str], tmp_path: Path
) -> None:
    backup, name = unreadable
    done = _as_a_reader_bound_by_modes(tmp_path / "elsewhere", "backup", "verify", str(backup))
    said = done.stdout + done.stderr
    assert f"{name}: cannot be read (Permission denied)" in said, said
    assert "Traceback" not in said and "backup intact" not in said, said
    assert done.returncode == 1, said
