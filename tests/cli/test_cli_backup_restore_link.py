"""`backup restore` into a new home that is a symbolic link to an empty folder (DXASSIST_HOME is often a
link to a larger disk: /var/lib/dxassist -> /data/dxassist). Since restores are staged beside the home and
renamed into place, the rename met the link and the restore was refused "Not a directory"; before, it
restored into the folder the link names. It does again, staged beside that folder (its file system)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from _dxassist_cli import plain_backup

from inference._backup_cli import backup_restore


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain backup of a home whose record holds an audit entry."""
    return plain_backup(tmp_path_factory.mktemp("link"))


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
