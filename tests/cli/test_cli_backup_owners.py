"""`backup restore` gives the restored home the owners and modes the backed-up home had: the server runs as
a service user, and an operator (root, from a cron job) makes and restores its backups.

Before, every restored file was the restoring user's, mode 0600, and every folder 0700: run as root, the
service user could read neither its record nor its keys, and the restored server did not start. The
backup now lists each file's and folder's owner and mode; a restore puts back the modes (never readable by
others; key files the owner's alone), and the owners when run as root (only root may give a file away).
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from _dxassist_cli import run_dxassist

from inference._backup_cli import backup_restore

_SERVICE = (4242, 4243)  # the service user's and group's ids, not the operator's
_ROOT = os.geteuid() == 0


def _as_the_service(home: Path) -> None:
    """Give every entry of ``home`` (itself included) the service's owner and the modes it uses."""
    for entry in [home, *home.rglob("*")]:
        entry.chmod(0o2750 if entry.is_dir() else 0o640)
        if _ROOT:
            os.chown(entry, *_SERVICE)


def _owners(home: Path) -> dict[str, tuple[int, int, int]]:
    """Each entry of ``home`` (itself as ``.``): its uid, gid and mode."""
    found = {}
    for entry in [home, *home.rglob("*")]:
        st = entry.lstat()
        found[entry.relative_to(home).as_posix()] = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    return found


def test_a_restored_home_has_the_owners_and_modes_of_the_backed_up_one(tmp_path: Path) -> None:
    home = tmp_path / "server"
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    _as_the_service(home)
    backed_up = _owners(home)
    made = run_dxassist(home, "backup", "create", str(tmp_path / "backup"))
    assert made.returncode == 0, made.stdout + made.stderr

    restored = tmp_path / "restored"
    out = io.StringIO()
    assert backup_restore(tmp_path / "backup", restored, stream=out) == 0, out.getvalue()

    now = _owners(restored)
    assert {"record.db", "keys", "audit/head.json"} <= set(now), sorted(now)
    me = (os.geteuid(), os.getegid())
    # The modes as they were; key files the owner's alone (as the server makes them).
    expected = {
        rel: ((uid, gid) if _ROOT else me) + (mode & 0o600 if rel.startswith("keys/") else mode,)
        for rel, (uid, gid, mode) in backed_up.items()
        if rel in now
    }
    assert {rel: now[rel] for rel in expected} == expected
