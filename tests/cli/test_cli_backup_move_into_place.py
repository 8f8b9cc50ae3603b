"""`backup restore` into a home that exists: an empty folder the operator made (its owner, mode and ACLs
set for the service), or a mount point (a volume; the restore is staged inside it). Its files are moved
into it one by one, and the folder itself is kept.

Before, an empty home made for the restore was replaced by the staged folder (renamed over it): its owner
and ACLs were lost (only its mode bits were copied). A restore into a mount point moved the entries one
by one with nothing to finish them: killed there (`kill -9`, a power cut), it left a home with some of
them (its keys, no record), which `dxassist serve` would start on as a new installation.

Now the moves are written down first (a journal in the staging folder, once everything was checked): a
`dxassist` command started on the home completes them; the next restore into it takes them back and
restores anew. The real console script in a subprocess, killed with SIGKILL right after its first move
(the moves take microseconds: the kill is made by the process itself, at that point); a mount point
needs root to make, so that case is staged inside the home as for a mount point.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _dxassist_cli import dxassist_env, plain_backup, run_dxassist

from inference._backup.journal import finish_moves, move_entries
from inference._backup_cli import BackupRefused, backup_restore

# Run as the restore's process: its first move into the home done, it is killed (-9) by itself.
_KILLED_AFTER_FIRST_MOVE = """
import os, signal, sys
from pathlib import Path
import inference._backup.restore as restore

if sys.argv[3] == "inside":  # staged inside the home, as for a mount point
    restore._staged_inside = lambda home: True
real = os.rename

def rename(source, target, *args, **kwargs):
    real(source, target, *args, **kwargs)
    if Path(target).parent == Path(sys.argv[2]).resolve():
        os.kill(os.getpid(), signal.SIGKILL)

os.rename = rename
sys.exit(restore.backup_restore(Path(sys.argv[1]), Path(sys.argv[2])))
"""


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain backup of a home whose record holds an audit entry."""
    return plain_backup(tmp_path_factory.mktemp("move-into-place"))


def _manifest(backup: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((backup / "manifest.json").read_text(encoding="utf-8"))
    return manifest


def _restored_whole(backup: Path, home: Path, *, opened: bool = False) -> None:
    """Every file of the backup is in ``home`` as backed up (``opened``: its record apart, which the
    command that opened it changed), and nothing of a staging folder is left."""
    for rel, entry in _manifest(backup)["files"].items():
        if opened and rel == "record.db":
            continue
        assert hashlib.sha256((home / rel).read_bytes()).hexdigest() == entry["sha256"], rel
    assert not [p for p in home.parent.rglob("*") if "restoring" in p.name]


def _kill_after_first_move(backup: Path, home: Path, staged: str) -> None:
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_FIRST_MOVE, str(backup), str(home), staged],
        env=dxassist_env(home.parent / "elsewhere"),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    # Killed between two moves: some of the backup's entries are in the home, not all.
    moved = {p.name for p in home.iterdir() if not p.name.startswith(".")}
    assert moved and "record.db" not in moved, moved


@pytest.mark.parametrize("staged", ["beside", "inside"])
def test_a_restore_killed_while_it_moves_files_into_the_home_is_completed_by_the_next_start(
    plain: Path, tmp_path: Path, staged: str
) -> None:
    home = tmp_path / "restored"
    home.mkdir()
    _kill_after_first_move(plain, home, staged)

    audited = run_dxassist(home, "audit", "verify")
    said = audited.stdout + audited.stderr
    assert audited.returncode == 0, said
    assert "completed the restore" in audited.stderr, said
    head = _manifest(plain)["record"]["audit_head"]["seq"]
    assert f"anchored at seq {head}" in said, said  # the backup's record, and its anchor
    _restored_whole(plain, home, opened=True)


@pytest.mark.parametrize("staged", ["beside", "inside"])
def test_a_restore_killed_while_it_moves_files_into_the_home_is_taken_back_by_the_next_restore(
    plain: Path, tmp_path: Path, staged: str
) -> None:
    home = tmp_path / "restored"
    home.mkdir()
    _kill_after_first_move(plain, home, staged)

    done = run_dxassist(home.parent / "elsewhere", "backup", "restore", str(plain), str(home))
    assert done.returncode == 0, done.stdout + done.stderr
    _restored_whole(plain, home)
    audited = run_dxassist(home, "audit", "verify")
    assert audited.returncode == 0, audited.stdout + audited.stderr


def test_an_empty_home_made_for_the_restore_is_kept_with_its_mode_and_owner(
    plain: Path, tmp_path: Path
) -> None:
    home = tmp_path / "restored"
    home.mkdir()
    home.chmod(0o2750)  # the service's group may enter it, and what is made in it is the group's
    if os.geteuid() == 0:
        os.chown(home, 4242, 4243)  # the service user's, not the restoring operator's
    before = home.stat()
    out = io.StringIO()
    assert backup_restore(plain, home, stream=out) == 0, out.getvalue()
    after = home.stat()
    assert (after.st_ino, after.st_dev) == (before.st_ino, before.st_dev)  # the very folder, not a new one
    assert stat.S_IMODE(after.st_mode) == 0o2750
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    _restored_whole(plain, home)


def test_a_freshly_formatted_volume_with_its_lost_and_found_is_an_empty_home(
    plain: Path, tmp_path: Path
) -> None:
    # mkfs.ext4 leaves lost+found at the root of every new volume: a restore onto the volume was refused
    # as "not empty". It is the file system's, never the installation's: kept, left as it is.
    home = tmp_path / "volume"
    (home / "lost+found").mkdir(parents=True, mode=0o700)
    out = io.StringIO()
    assert backup_restore(plain, home, stream=out) == 0, out.getvalue()
    _restored_whole(plain, home)
    assert (home / "lost+found").is_dir() and not any((home / "lost+found").iterdir())
    # Anything else in it still makes the folder an installation a restore never writes over.
    other = tmp_path / "other"
    (other / "lost+found").mkdir(parents=True)
    (other / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(BackupRefused, match="not a new or empty folder"):
        backup_restore(plain, other, stream=io.StringIO())


def _waits_on_lock(folder: Path) -> bool:
    """Whether some process waits (blocked) for the ``flock`` of ``folder`` (``/proc/locks``: ``->``)."""
    inode = os.stat(folder).st_ino
    for line in Path("/proc/locks").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if "->" in fields and fields[-3].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def test_a_command_started_while_another_completes_the_moves_starts_on_the_whole_home(
    plain: Path, tmp_path: Path
) -> None:
    # Two commands started at once on a home a killed restore left half moved: the first completes the
    # moves (it holds the staging folder's lock); the second skipped the locked folder as "a running
    # restore" and started on the half-restored home (its keys, no record: a new installation).
    home = tmp_path / "restored"
    home.mkdir()
    _kill_after_first_move(plain, home, "beside")
    (work,) = [p for p in tmp_path.iterdir() if "restoring" in p.name]
    finished: list[int] = []
    whole_then: list[bool] = []

    def second_command() -> None:
        finished.append(finish_moves(home, complete=True, remove=False))
        whole_then.append((home / "record.db").exists())

    holder = os.open(work, os.O_RDONLY | os.O_DIRECTORY)  # the first command, completing the moves
    fcntl.flock(holder, fcntl.LOCK_EX)
    second = threading.Thread(target=second_command)
    try:
        second.start()
        for _ in range(6000):  # a bound, so a regression fails instead of hanging
            if not second.is_alive() or _waits_on_lock(work):
                break
            time.sleep(0.01)
        assert second.is_alive(), f"started on a home without its record: {whole_then}"
    finally:
        os.close(holder)  # the first command is done with it (here: it did nothing; the second does it)
        second.join(timeout=300)
    assert finished == [1] and whole_then == [True]
    _restored_whole(plain, home)


def test_moves_refused_and_taken_back_are_not_completed_by_the_next_command(tmp_path: Path) -> None:
    # A restore whose moves were refused (a folder written into the home meanwhile) takes back what it
    # moved and says nothing was restored; its journal was left in the staging folder, so a command
    # started before the folder was removed (one waiting for its lock) completed the moves anyway.
    work = tmp_path / ".home.restoring-x"
    staged = work / "home"
    for rel in ("audit/head.json", "keys/audit-anchor.key", "record.db"):
        (staged / rel).parent.mkdir(parents=True, exist_ok=True)
        (staged / rel).write_bytes(b"restored")
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "written-meanwhile").write_bytes(b"theirs")

    with pytest.raises(OSError):
        move_entries(work, home)
    assert sorted(p.name for p in home.iterdir()) == ["keys"]  # what it moved, taken back

    assert finish_moves(home, complete=True, remove=False) == 0
    assert sorted(p.name for p in home.iterdir()) == ["keys"]
    assert [p.name for p in (home / "keys").iterdir()] == ["written-meanwhile"]


def test_a_killed_restore_into_a_home_whose_name_has_brackets_is_completed(
    plain: Path, tmp_path: Path
) -> None:
    # The staging folders were found by a glob of the home's name: "ward[2]" is a pattern matching "ward2",
    # so the killed restore's folder beside it was never found, and the home stayed half restored.
    home = tmp_path / "ward[2]"
    home.mkdir()
    _kill_after_first_move(plain, home, "beside")

    assert finish_moves(home, complete=True, remove=False) == 1
    _restored_whole(plain, home)
