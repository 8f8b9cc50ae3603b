"""`backup restore` gives the restored home the owners and modes the backed-up home had: the server runs as
a service user, and an operator (root, from a cron job) makes and restores its backups.

Before, every restored file was the restoring user's, mode 0600, and every folder 0700: run as root, the
service user could read neither its record nor its keys, and the restored server did not start. The
backup now lists each file's and folder's owner and mode; a restore puts back the modes (never readable by
others; key files the owner's alone), and the owners when run as root (only root may give a file away).
"""

from __future__ import annotations

import grp
import io
import json
import os
import pwd
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


def _served_home(tmp_path: Path) -> Path:
    """A home with keys and a record (a token issued in it makes both)."""
    home = tmp_path / "server"
    home.mkdir()
    issued = run_dxassist(home, "token", "issue", "--subject", "pacs", "--role", "pacs", "--facility", "F1")
    assert issued.returncode == 0, issued.stderr
    return home


def test_a_restored_home_has_the_owners_and_modes_of_the_backed_up_one(tmp_path: Path) -> None:
    home = _served_home(tmp_path)
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


def _listed_ids_changed(backup: Path, ids: dict[int, int]) -> None:
    """Rewrite the manifest's owner ids as another machine would have numbered the same users."""
    path = backup / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in [*manifest["files"].values(), *manifest["folders"].values()]:
        entry["uid"], entry["gid"] = ids.get(entry["uid"], entry["uid"]), ids.get(entry["gid"], entry["gid"])
    path.write_text(json.dumps(manifest))


def test_owners_are_matched_by_name_on_a_machine_that_numbers_its_users_otherwise(tmp_path: Path) -> None:
    # The backup was made where the service account (here `nobody`, group `nogroup`) had ids 4242 and
    # 4243; on this rebuilt server the same account has other ids. A restore by id gave the record and the
    # keys to whichever account holds 4242 here (or to none): the service could not read them.
    service = pwd.getpwnam("nobody")
    group = grp.getgrnam("nogroup")
    home = _served_home(tmp_path)
    for entry in [home, *home.rglob("*")]:
        if _ROOT:
            os.chown(entry, service.pw_uid, group.gr_gid)
    made = run_dxassist(home, "backup", "create", str(tmp_path / "backup"))
    assert made.returncode == 0, made.stdout + made.stderr
    listed = json.loads((tmp_path / "backup" / "manifest.json").read_text())["files"]["record.db"]
    assert (listed["user"], listed["group"]) == (
        ("nobody", "nogroup")
        if _ROOT
        else (pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name)
    )
    _listed_ids_changed(tmp_path / "backup", {service.pw_uid: 4242, group.gr_gid: 4243})

    restored = tmp_path / "restored"
    out = io.StringIO()
    assert backup_restore(tmp_path / "backup", restored, stream=out) == 0, out.getvalue()

    expected = (service.pw_uid, group.gr_gid) if _ROOT else (os.geteuid(), os.getegid())
    owners = {rel: (uid, gid) for rel, (uid, gid, _mode) in _owners(restored).items()}
    assert {owners[rel] for rel in ("record.db", "keys", "audit/head.json")} == {expected}
    assert "this machine has no" not in out.getvalue()


def test_an_owner_this_machine_does_not_know_keeps_its_id_and_the_operator_is_told(tmp_path: Path) -> None:
    home = _served_home(tmp_path)
    _as_the_service(home)
    made = run_dxassist(home, "backup", "create", str(tmp_path / "backup"))
    assert made.returncode == 0, made.stdout + made.stderr
    path = tmp_path / "backup" / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in [*manifest["files"].values(), *manifest["folders"].values()]:
        entry["user"], entry["group"] = "dxassist-gone", "dxassist-gone-group"
    path.write_text(json.dumps(manifest))

    restored = tmp_path / "restored"
    out = io.StringIO()
    assert backup_restore(tmp_path / "backup", restored, stream=out) == 0, out.getvalue()

    st = (restored / "record.db").lstat()
    assert (st.st_uid, st.st_gid) == (_SERVICE if _ROOT else (os.geteuid(), os.getegid()))
    if _ROOT:
        assert "this machine has no group dxassist-gone-group, user dxassist-gone" in out.getvalue()
