"""`backup restore` into a new home that is a symbolic link to an empty folder (DXASSIST_HOME is often a
link to a larger disk: /var/lib/dxassist -> /data/dxassist). Since restores are staged beside the home and
renamed into place, the rename met the link and the restore was refused "Not a directory"; before, it
restored into the folder the link names. It does again, staged beside that folder (its file system)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, dxassist_env

from inference._backup_cli import backup_restore


def _dxassist(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DXASSIST), *args],
        env=dxassist_env(home),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain backup of a home whose record holds an audit entry."""
    root = tmp_path_factory.mktemp("link")
    home = root / "server"
    home.mkdir()
    issued = _dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    made = _dxassist(home, "backup", "create", str(root / "backup"))
    assert made.returncode == 0, made.stdout + made.stderr
    return root / "backup"


def test_a_new_home_that_is_a_link_to_an_empty_folder_is_restored_into_that_folder(
    plain: Path, tmp_path: Path
) -> None:
    target = tmp_path / "disk" / "dxassist"
    target.mkdir(parents=True)
    home = tmp_path / "home"
    home.symlink_to(target)
    out = io.StringIO()
    assert backup_restore(plain, home, stream=out) == 0, out.getvalue()
    assert home.is_symlink() and home.resolve() == target.resolve()
    assert (target / "record.db").is_file() and (target / "keys").is_dir()
    assert not list(tmp_path.rglob("*restoring*"))
