"""``dxassist backup create``: a consistent copy of the home into a new folder, plain or sealed."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import stat
import sys
import tempfile
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO, cast

import inference

if TYPE_CHECKING:
    from inference.config import Settings
    from inference.security._sealing import BackupSigner, Recipient

from inference._backup.files import (
    _HEADROOM,
    _HOME_TREES,
    _NO_ROOM,
    _SPOOL_RECEIVING,
    _SPOOL_TREES,
    ANCHOR_FILE,
    ANCHOR_KEY_FILE,
    DIMSE_SPOOL_COPY,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PARTIAL,
    RECORD_FILE,
    REGISTRY_FILE,
    SEALED_FILE,
    SEALED_FORMAT,
    STAGING,
    BackupRefused,
    _copy_file,
    _copy_tree,
    _Digesting,
    _entry,
    _locked,
    _private_file,
    _private_folder,
    _remove_unlocked,
    _sqlite_copy,
    _stopped_as_interrupted,
    owner_of,
)
from inference._backup.manifest import (
    _audit_of,
    _origin,
    _plain_statement,
    _problem_lines,
    _publish,
    _revision,
)
from inference._backup.signing import _SIGNS_PLAIN, _SIGNS_SEALED, _has_signer, _recipient, _signer


def _sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL, None for any other database."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url or url[len(prefix) :].startswith("file:"):
        return None
    name = url[len(prefix) :]
    return Path(name) if name not in ("", ":memory:") else None


def _dialect(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0]


@dataclass
class _Plan:
    """What one ``backup create`` wrote, for the manifest and the closing lines."""

    notes: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    registry: dict[str, Any] = field(default_factory=dict)
    dimse_spool: str | None = None
    problems: list[str] = field(default_factory=list)


def _refuse_destination(dest: Path, home: Path) -> bool:
    """Refuse a destination that is not a new or empty folder outside the home; True when it exists."""
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir():
            raise BackupRefused(f"{dest} exists and is not a folder; give a new or empty folder.")
        if any(dest.iterdir()):
            raise BackupRefused(
                f"{dest} is not empty; give a new or empty folder (a backup never overwrites)."
            )
        existed = True
    else:
        existed = False
    resolved = dest.resolve()
    if resolved == home or resolved.is_relative_to(home):
        raise BackupRefused(f"{dest} is inside DXASSIST_HOME ({home}); give a folder outside it.")
    return existed


def _record_part(settings: Settings, partial: Path, plan: _Plan) -> None:
    source = _sqlite_file(settings.record_url)
    if source is None:
        plan.record = {"kind": "external", "dialect": _dialect(settings.record_url)}
        plan.notes.append(
            "The patient record is in an external database (DXASSIST_DATABASE_URL) and is NOT in this "
            "backup: back it up with pg_dump (or continuous archiving) at the same time."
        )
        return
    if not source.exists():
        plan.record = {"kind": "absent"}
        plan.notes.append("This home holds no patient record yet (no record.db): none was copied.")
        return
    _sqlite_copy(source, partial / RECORD_FILE)
    plan.record = {"kind": "sqlite", "file": RECORD_FILE, "revision": _revision(partial / RECORD_FILE)}


def _registry_part(settings: Settings, partial: Path, plan: _Plan) -> None:
    source = _sqlite_file(settings.tracking_uri)
    if source is None:
        plan.registry = {"kind": "external", "dialect": _dialect(settings.tracking_uri)}
        plan.notes.append(
            "The MLflow registry is an external store (MLFLOW_TRACKING_URI) and is not in this backup; "
            "its artifacts under mlartifacts/ are."
        )
    elif source.exists():
        _sqlite_copy(source, partial / REGISTRY_FILE)
        plan.registry = {"kind": "sqlite", "file": REGISTRY_FILE}
    else:
        plan.registry = {"kind": "absent"}


def _spool_place(settings: Settings, home: Path) -> str:
    spool = settings.listener_spool.resolve()
    if spool == home:
        return "."
    if spool.is_relative_to(home):
        return spool.relative_to(home).as_posix()
    return DIMSE_SPOOL_COPY


def _anchor_part(partial: Path, anchor_bytes: bytes | None, plan: _Plan) -> None:
    """Put the live anchor (read before the record was copied: a lower bound of the copy's head) beside
    the copied record, check the copy against it, then move the copy's own anchor to the copy's head."""
    from inference.record import HeadAnchor, RecordError

    if anchor_bytes is not None:
        _private_folder(partial / "audit")
        with open(partial / ANCHOR_FILE, "xb", opener=_private_file) as handle:
            handle.write(anchor_bytes)
    if plan.record.get("kind") != "sqlite":
        return
    try:
        report = _audit_of(partial)
    except RecordError:
        plan.problems.append("record.db: the copied record cannot be read as a patient record.")
        return
    plan.record["audit_head"] = {"seq": report.head_seq, "hash": report.head_hash}
    if not report.ok:
        plan.problems += _problem_lines(report)
        return
    anchor = HeadAnchor(partial)
    if anchor.keyed and report.head_seq > 0:
        # The copy holds the anchored entry (checked above): its own anchor names exactly its head.
        anchor.advance(report.head_seq, report.head_hash)
        (partial / "audit" / ".head.lock").unlink(missing_ok=True)
        (partial / ANCHOR_FILE).chmod(0o600)


def _tree_bytes(source: Path, skip: frozenset[Path] = frozenset()) -> int:
    """The bytes :func:`_copy_tree` would copy from ``source`` (about: links counted as their files)."""
    total = 0
    for folder, subfolders, files in os.walk(source):
        here = Path(folder)
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and here / d not in skip]
        for name in files:
            if not name.startswith("."):
                with suppress(OSError):
                    total += (here / name).stat().st_size
    return total


def _database_bytes(settings: Settings) -> int:
    """About how many bytes the copies of the SQLite databases hold (at most: with the write-ahead log)."""
    total = 0
    for url in (settings.record_url, settings.tracking_uri):
        database = _sqlite_file(url)
        if database is not None:
            for path in (database, database.with_name(database.name + "-wal")):
                with suppress(OSError):
                    total += path.stat().st_size
    return total


def _backup_bytes(settings: Settings, home: Path, *, logs: bool) -> int:
    """About how many bytes a backup of ``home`` holds (at most: a database with its write-ahead log)."""
    total = _database_bytes(settings)
    place = _spool_place(settings, home)
    spool_folders = (
        frozenset(home / place / name for name in (*_SPOOL_TREES, _SPOOL_RECEIVING))
        if place != DIMSE_SPOOL_COPY
        else frozenset()
    )
    total += sum(_tree_bytes(home / name, spool_folders) for name in _HOME_TREES)
    total += sum(_tree_bytes(settings.listener_spool / name) for name in _SPOOL_TREES)
    if logs:
        total += _tree_bytes(settings.log_dir)
    return total


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.1f} GiB" if size >= 1 << 30 else f"{-(-size // (1 << 20))} MiB"


def _refuse_without_room(settings: Settings, home: Path, dest: Path, *, logs: bool, staged: bool) -> None:
    """Refuse, before anything is written, a backup the free space cannot hold: its size (and
    :data:`_HEADROOM`) on ``dest``'s file system and, for a sealed backup, once more on the home's (the
    staged copy: filling the live disk would stop the server's own writes); for a plain one, the size of
    its databases on the home's (their private copy, made there before it is copied into ``dest``).

    Raises:
        BackupRefused: A file system has less free space than the backup needs there.
    """
    size = _backup_bytes(settings, home, logs=logs)
    existing = dest
    while not existing.exists():
        existing = existing.parent
    needs: dict[int, tuple[int, Path, list[str]]] = {}
    databases = _database_bytes(settings)
    places = [(existing, "the backup", size)]
    if staged:
        places.append((home, "the copy staged in the home", size))
    elif databases:
        places.append((home, "the private copy of its databases in the home", databases))
    for where, what, bytes_ in places:
        device = where.stat().st_dev
        total, _where, whats = needs.get(device, (_HEADROOM, where, []))
        needs[device] = (total + bytes_, _where, [*whats, what])
    for need, where, whats in needs.values():
        free = shutil.disk_usage(where).free
        if free < need:
            each = f"{_gib(size)} each" if staged and len(whats) > 1 else _gib(need - _HEADROOM)
            raise BackupRefused(
                f"Not enough free space: {' and '.join(whats)} {'need' if len(whats) > 1 else 'needs'} "
                f"about {_gib(need)} on the file system of {where} ({each}, and {_gib(_HEADROOM)} to "
                f"spare); {_gib(free)} are free. Nothing was written: free space, or give a DEST on "
                "another file system."
            )


def _no_room(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno in _NO_ROOM
    return "full" in str(error).lower()


def backup_create(
    settings: Settings,
    dest: Path,
    *,
    logs: bool = False,
    encrypt_to: Path | None = None,
    stream: TextIO | None = None,
) -> int:
    """Write a consistent, verifiable copy of ``DXASSIST_HOME`` into ``dest`` (a new or empty folder).

    Safe while ``dxassist serve`` and ``dxassist listen`` run. Everything is written into
    ``dest/.partial`` and moved into ``dest`` at the end, ``manifest.json`` last; on any failure what
    was written is removed. With ``encrypt_to`` (a custodian's public key) the copy is staged in a
    private folder of the home and only its sealed form reaches ``dest``; a staging folder a create
    killed meanwhile left there is removed first.

    Returns:
        0 when the backup was written (with an external record: everything else, and a note saying so);
        1 when it was written but the audit trail it holds does not verify (the problems are printed).

    Raises:
        BackupRefused: ``dest`` is not a new or empty folder outside the home, cannot be written, its
            file system (or the home's, for the staged copy of a sealed backup) has not the room the
            backup needs (checked before anything is written), or ran out of room.
    """
    out = stream if stream is not None else sys.stdout
    home = settings.resolved_home
    recipient = _recipient(encrypt_to) if encrypt_to is not None else None
    existed = _refuse_destination(dest, home)
    _remove_unlocked(home.glob(f"{STAGING}*"))  # a plain copy a killed sealed backup left in the home
    _refuse_without_room(settings, home, dest, logs=logs, staged=recipient is not None)
    sealing = (recipient, _signer(settings, _SIGNS_SEALED)) if recipient is not None else None
    # A plain backup is signed once the server has a backup-signing key (`backup signer`, or a sealed
    # backup made): custodians then check who made it and when. Without one, none is made for it.
    plain_signer = _signer(settings, _SIGNS_PLAIN) if sealing is None and _has_signer(settings) else None
    partial = dest / PARTIAL
    try:
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial.mkdir(mode=0o700)
        # The folder made, held open: what is listed and signed is read through it, whatever name
        # another process with write access to DEST (a shared mount) puts in its place meanwhile.
        made = os.open(partial, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        raise BackupRefused(f"{dest} cannot be written ({e.strerror or type(e).__name__}).") from e
    plan = _Plan()
    try:
        # A SIGTERM (a scheduler's timeout, a service stop) interrupts as Ctrl-C does: the partial copy
        # of the record is removed from DEST (and a sealed backup's plain staging copy from the home).
        with _stopped_as_interrupted():
            if sealing is None:
                files = _write(settings, home, partial, plan, logs=logs, signer=plain_signer, made=made)
            else:
                files = _write_sealed(
                    settings, home, partial, plan, logs=logs, recipient=sealing[0], signer=sealing[1]
                )
    except BaseException as e:
        # Only what this command made: DEST itself stays (emptied) when the operator made it beforehand.
        shutil.rmtree(partial, ignore_errors=True)
        if not existed:
            shutil.rmtree(dest, ignore_errors=True)
        if isinstance(e, KeyboardInterrupt):
            raise KeyboardInterrupt(
                f"the backup was interrupted; its partial copy was removed from {dest}, nothing was kept."
            ) from e
        if not isinstance(e, OSError | sqlite3.Error):
            raise
        if _no_room(e):
            raise BackupRefused(
                f"The file system of {dest} ran out of room (or over a size limit); the partial backup "
                "was removed. Free space or give a folder on a larger file system."
            ) from e
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise BackupRefused(
            f"The backup could not be written into {dest} ({reason}); nothing was kept."
        ) from e
    finally:
        os.close(made)
    size = sum(int(f["size"]) for f in files.values())
    if sealing is None:
        out.write(
            "WARNING: this backup holds the installation's secrets (keys/: the token signing key, the "
            "de-identification secret, the audit anchor key) and patient data: store it encrypted, where "
            "only its custodians can read it (or take it with --encrypt-to).\n"
        )
        if plain_signer is not None:
            out.write(
                f"Signed with this server's backup-signing key {plain_signer.fingerprint[:16]}: check who "
                "made it and when with `backup verify|restore --signer SERVER.pub`.\n"
            )
    else:
        recipient, signer = sealing
        out.write(
            f"Sealed for the custodian key {recipient.fingerprint[:16]}: only its private key opens it "
            "(keep that key apart from this backup and from this host).\n"
        )
        out.write(
            f"Signed with this server's backup-signing key {signer.fingerprint[:16]}: "
            "custodians check it with `backup verify|restore --signer SERVER.pub` (`dxassist backup "
            "signer > SERVER.pub` writes that file; keep it apart from the backups).\n"
        )
    for note in plan.notes:
        out.write(f"Note: {note}\n")
    head = plan.record.get("audit_head")
    about = (
        f"; record at revision {plan.record.get('revision') or '-'}, audit head seq {head['seq']} "
        f"sha256 {head['hash']}"
        if head
        else ""
    )
    out.write(f"backup written to {dest}: {len(files)} files, {size} bytes{about}.\n")
    if plan.problems:
        out.write("The audit trail in this backup does NOT verify (nor, then, the live one):\n")
        for line in plan.problems:
            out.write(f"  {line}\n")
        out.write("Run `dxassist audit verify` on the installation and tell the security officer.\n")
        return 1
    out.write(f"Check it with `dxassist backup verify {dest}` (and again before it is needed).\n")
    return 0


def _write(
    settings: Settings,
    home: Path,
    partial: Path,
    plan: _Plan,
    *,
    logs: bool,
    signer: BackupSigner | None = None,
    made: int | None = None,
) -> dict[str, Any]:
    """Copy everything into ``partial``, write the manifest (signed with ``signer`` when given), move it
    all into place; the file list. ``made``: ``partial`` as made, open: the files are listed and hashed
    through it (a private folder of the home needs none)."""
    # The databases and the anchor (what SQLite and the anchor write, not a plain copy) are made in a
    # private folder: the partial backup itself when it is one (a sealed backup's staging), else one of
    # the home's; then copied into ``partial``, hashed as written (DEST may be written by others).
    copied: dict[Path, dict[str, Any]] = {}
    if made is None:
        copied = {
            partial / rel: _entry(partial, rel) | _live_owner(settings, home, rel)
            for rel in _databases(settings, home, partial, plan)
        }
    else:
        staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=home))  # 0700, beside the live data
        fd = -1
        try:
            fd = _locked(staging)  # a create killed meanwhile leaves it: the next create removes it
            for rel in _databases(settings, home, staging, plan):
                entry = _copy_file(staging / rel, partial / rel)
                if entry is None:  # only this command writes the staging folder
                    raise OSError(errno.ENOENT, f"{rel} went away from the staging folder")
                copied[partial / rel] = entry | _live_owner(settings, home, rel)
        finally:
            if fd >= 0:
                os.close(fd)
            shutil.rmtree(staging, ignore_errors=True)
    place = _spool_place(settings, home)
    plan.dimse_spool = place
    # A DIMSE spool inside one of the home's trees (``DXASSIST_DIMSE_SPOOL=spool``) is copied once, by
    # the spool's own step below, and its ``receiving/`` not at all.
    spool_folders = (
        frozenset(home / place / name for name in (*_SPOOL_TREES, _SPOOL_RECEIVING))
        if place != DIMSE_SPOOL_COPY
        else frozenset()
    )
    unfollowed: list[Path] = []
    # Each file hashed as it is copied: DEST may ignore permissions (a shared mount), and a file rewritten
    # there after its copy must not be listed, and signed, as the server's.
    for name in _HOME_TREES:
        copied |= _copy_tree(home / name, partial / name, skip=spool_folders, unfollowed=unfollowed)
    for name in _SPOOL_TREES:
        copied |= _copy_tree(settings.listener_spool / name, partial / place / name, unfollowed=unfollowed)
    if place == DIMSE_SPOOL_COPY:
        plan.notes.append(
            "The DIMSE spool is outside DXASSIST_HOME: its incoming/ and dead-letter/ are in "
            f"{DIMSE_SPOOL_COPY}/."
        )
    if logs:
        copied |= _copy_tree(settings.log_dir, partial / "logs", unfollowed=unfollowed)
    if unfollowed:
        shown = ", ".join(path.relative_to(partial).as_posix() for path in unfollowed[:10])
        more = f" and {len(unfollowed) - 10} more" if len(unfollowed) > 10 else ""
        plan.notes.append(
            f"{len(unfollowed)} symbolic link(s) leading out of their folder (or to no file) were not "
            f"followed and are NOT in this backup: {shown}{more}."
        )
    files = {place.relative_to(partial).as_posix(): entry for place, entry in copied.items()}
    files = dict(sorted(files.items()))
    # The owner and mode of the home and of each of its folders the backup holds files of.
    folders: dict[str, dict[str, int | str | None]] = {}
    for rel in [".", *sorted({p.as_posix() for f in files for p in PurePosixPath(f).parents} - {"."})]:
        with suppress(OSError):
            status = (home / rel).lstat()
            if stat.S_ISDIR(status.st_mode):
                folders[rel] = owner_of(status)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dxassist_version": inference.__version__,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "origin": _origin(),
        "record": plan.record,
        "registry": plan.registry,
        "dimse_spool": plan.dimse_spool,
        "logs": logs,
        "files": files,
        "folders": folders,
    }
    if signer is not None:
        from inference.security._sealing import sign_statement

        manifest["signed"] = sign_statement(signer, _plain_statement(manifest))
    _publish(partial, manifest)
    return files


def _live_owner(settings: Settings, home: Path, rel: str) -> dict[str, int | str | None]:
    """The owner and mode of the live file a database copy or the anchor was made from (none when it is
    gone): the copy itself is this command's."""
    from inference.record import HeadAnchor

    source = {
        RECORD_FILE: _sqlite_file(settings.record_url),
        REGISTRY_FILE: _sqlite_file(settings.tracking_uri),
        ANCHOR_FILE: HeadAnchor(home).path,
    }.get(rel)
    try:
        return {} if source is None else owner_of(source.stat())
    except OSError:
        return {}


def _databases(settings: Settings, home: Path, private: Path, plan: _Plan) -> list[str]:
    """Make the record's and the registry's SQLite copies and the anchor in ``private`` (a folder only
    this command writes), checked there (:func:`_anchor_part`); the files made, relative to it."""
    from inference.record import HeadAnchor

    live_anchor = HeadAnchor(home).path
    # Read before the record is copied: the anchor only moves forward after commits, so what it names
    # is in the snapshot taken after it.
    anchor_bytes = live_anchor.read_bytes() if live_anchor.is_file() else None
    _record_part(settings, private, plan)
    _registry_part(settings, private, plan)
    key = private / ANCHOR_KEY_FILE
    # The anchor is checked and moved with the home's key (copied along with keys/, later).
    borrowed = not key.exists() and _copy_file(home / ANCHOR_KEY_FILE, key) is not None
    try:
        _anchor_part(private, anchor_bytes, plan)
    finally:
        if borrowed:
            key.unlink()
    return [
        rel
        for rel, wrote in (
            (RECORD_FILE, plan.record.get("kind") == "sqlite"),
            (REGISTRY_FILE, plan.registry.get("kind") == "sqlite"),
            (ANCHOR_FILE, anchor_bytes is not None),
        )
        if wrote
    ]


def _write_sealed(
    settings: Settings,
    home: Path,
    partial: Path,
    plan: _Plan,
    *,
    logs: bool,
    recipient: Recipient,
    signer: BackupSigner,
) -> dict[str, Any]:
    """Stage the backup in a private folder of the home, seal it into ``partial``, sign what was sealed,
    move it into place; the staged file list. The staging folder is removed whatever happens."""
    from inference.security._sealing import SealError, SealWriter, sign_statement

    staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=home))  # 0700, beside the live data
    fd = -1
    try:
        fd = _locked(staging)  # a create killed meanwhile leaves it: the next create removes it
        inner = staging / PARTIAL
        inner.mkdir(mode=0o700)
        files = _write(settings, home, inner, plan, logs=logs)
        sealed = partial / SEALED_FILE
        with open(sealed, "xb", opener=_private_file) as handle:
            # Hashed as written: DEST may be a medium others write (the file is replaced after it is
            # written, before it would be read back), and the server signs this hash.
            written = _Digesting(handle)
            writer = SealWriter(cast("BinaryIO", written), recipient)
            for rel in [*sorted(files), MANIFEST]:
                writer.add(rel, staging / rel)
            writer.close()
            handle.flush()
            os.fsync(handle.fileno())
    except SealError as e:
        raise OSError(errno.EIO, str(e)) from e
    finally:
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    size, digest = written.size, written.digest.hexdigest()
    statement = {
        "format": SEALED_FORMAT,
        "sealed_sha256": digest,
        "sealed_size": size,
        "recipient": recipient.fingerprint,
        "created_at": created,
        "origin": _origin(),
        "dxassist_version": inference.__version__,
    }
    manifest = {
        "format": SEALED_FORMAT,
        "format_version": FORMAT_VERSION,
        "dxassist_version": inference.__version__,
        "created_at": created,
        "record": plan.record,
        "sealed": {
            "file": SEALED_FILE,
            "size": size,
            "sha256": digest,
            "files": len(files),
            "recipient": recipient.fingerprint,
        },
        "signed": sign_statement(signer, statement),
    }
    _publish(partial, manifest)
    return files
