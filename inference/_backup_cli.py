"""The bodies of ``dxassist backup create | verify | restore`` (the CLI only parses flags).

A backup is a folder: the record and the MLflow store copied through SQLite's online backup API (a
consistent snapshot while ``serve`` and ``listen`` keep filing), the MLflow artifacts, the model cache,
``keys/``, the audit anchor, the DIMSE spool's received studies and dead letters, the output builds'
spool and, when asked, the logs; then ``manifest.json``, written last, names every file with its size
and sha256 (paths relative to the backup: it can be moved) and the audit chain's head found in the
copied record. Without a manifest a folder is not a backup.

A **sealed** backup (``backup create DEST --encrypt-to CUSTODIAN.pub``) is that same folder, staged in
a private folder of the home, then written into ``DEST`` as one file encrypted to the custodian's public
key (``backup.sealed``, :mod:`inference.security._sealing`) beside a manifest that names only that file
(size, sha256, the key's fingerprint) and the audit head; the host that takes it cannot open it, nor can
whoever finds the medium. The manifest also carries a statement signed with the server's backup-signing
key (the sealed file's sha256 and size, the custodian key, when and on which host): ``verify --signer
SERVER.pub`` and ``restore`` check who made it (anyone holding the custodian's public key could seal
one). Once the server has that key (``backup signer``), a plain backup's manifest is signed too (its
sha256, when and on which host): ``--signer`` checks it the same way, and refuses an unsigned one.
A sealed backup is opened into a private folder of the home (``restore``: of its staging folder, beside
the new home), never a shared temporary folder. ``verify`` checks the sealed file as written without the
key and everything inside with it; ``restore`` needs the key.

Messages name files and folders of the installation, never a patient's name, identifier or birth date.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TextIO, cast

import inference
from inference.errors import InferenceError

if TYPE_CHECKING:
    from inference.config import Settings
    from inference.record import AuditReport
    from inference.security._sealing import BackupSigner, Recipient

MANIFEST: Final = "manifest.json"
PARTIAL: Final = ".partial"
FORMAT: Final = "dxassist-backup"
FORMAT_VERSION: Final = 1
SEALED_FORMAT: Final = "dxassist-backup-sealed"
SEALED_FILE: Final = "backup.sealed"
RECORD_FILE: Final = "record.db"
REGISTRY_FILE: Final = "mlflow.db"
ANCHOR_FILE: Final = "audit/head.json"
DIMSE_SPOOL_COPY: Final = "dimse-spool"
"""Where a DIMSE spool kept outside ``DXASSIST_HOME`` (``DXASSIST_DIMSE_SPOOL``) is put in the backup."""
STAGING: Final = ".backup-staging-"
"""The name's start of the private folder of the home a sealed backup is staged in."""
UNSEALING: Final = ".backup-unsealed"
"""Where ``verify`` (in the home) opens a sealed backup, 0700 (``restore``: in its staging folder)."""
RESTORING: Final = ".restoring-"
"""The name's end (after ``.HOME``, beside the new home) or start (inside it, when the home is a mount
point or its parent cannot be written) of the private folder a restore is staged in, 0700."""

# Folders copied as they are, relative to the home. ``receiving/`` (instances of associations still
# open: the sender has no answer yet and sends them again) and ``runs/`` (training work folders: the
# registered models are in ``mlartifacts/``) are left out.
_HOME_TREES: Final = ("mlartifacts", "models", "keys", "spool")
_SPOOL_TREES: Final = ("incoming", "dead-letter")
_SPOOL_RECEIVING: Final = "receiving"
_NO_ROOM: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_HEADROOM: Final = 64 << 20
"""Free space a backup leaves on each file system it writes to (the live server's, the manifest)."""
_CHUNK: Final = 1 << 20


class BackupRefused(InferenceError):
    """The backup (or restore) cannot be made where asked; nothing that looks like a backup was left."""


def _private_file(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _private_folder(path: Path) -> None:
    """Make ``path`` and any missing folder above it, each 0700 (``mkdir(parents=True)`` would not)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)


def _copy_file(source: Path, target: Path) -> bool:
    """Copy one file (0600, on disk before it returns); False when it went away before it was opened."""
    try:
        reader = open(source, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:  # a study analysed, a cache entry replaced since the folder was listed
        return False
    _private_folder(target.parent)
    with reader, open(target, "xb", opener=_private_file) as writer:
        shutil.copyfileobj(reader, writer, _CHUNK)
        writer.flush()
        os.fsync(writer.fileno())
    return True


def _copy_tree(
    source: Path, target: Path, *, skip: frozenset[Path] = frozenset(), unfollowed: list[Path] | None = None
) -> int:
    """Copy the regular files under ``source`` (dot-named temporary and lock files, and the folders
    ``skip`` names, left out).

    A symbolic link to a file inside ``source`` is copied as the file it names: a Kubernetes Secret or
    ConfigMap mounted as a folder (``keys/``) is made of such links into its own dot-named folder. A link
    that leads out of ``source``, or to no file, is not followed; its place in the backup is added to
    ``unfollowed``.
    """
    copied = 0
    if not source.is_dir():
        return 0
    root = source.resolve()
    for folder, subfolders, files in os.walk(source):
        here = Path(folder)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and here / d not in skip)
        for name in sorted(files):
            path = here / name
            if name.startswith("."):
                continue
            if path.is_symlink():
                named = path.resolve()
                if not named.is_relative_to(root) or not named.is_file():
                    if unfollowed is not None:
                        unfollowed.append(target / path.relative_to(source))
                    continue
                copied += _copy_file(named, target / path.relative_to(source))
            elif path.is_file():
                copied += _copy_file(path, target / path.relative_to(source))
    return copied


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (its write-ahead log included), in one file.

    ``Connection.backup`` copies every page in one step under a read transaction: a snapshot of the
    committed state, while writers go on (WAL). The copy is switched to a rollback journal so that it
    is one self-contained file, readable read-only; a server opening it switches it back to WAL.
    """
    _private_folder(target.parent)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    live = sqlite3.connect(source, timeout=30)  # read only by the backup; a WAL file needs a writable open
    try:
        copy = sqlite3.connect(target)
        try:
            live.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    finally:
        live.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> Iterator[str]:
    """Every file under ``root`` as a relative POSIX path (links and other non-files too: named, not read)."""
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files):
            yield (Path(folder) / name).relative_to(root).as_posix()


def _inventory(root: Path) -> dict[str, dict[str, Any]]:
    return {
        rel: {"size": (root / rel).stat().st_size, "sha256": _sha256(root / rel)}
        for rel in _files(root)
        if rel != MANIFEST
    }


def _inventory_at(folder: int) -> dict[str, dict[str, Any]]:
    """:func:`_inventory` of the folder open as ``folder``, each file read through it (links not
    followed): the files written into it, even if its name now names another folder."""
    files: dict[str, dict[str, Any]] = {}
    for where, subfolders, names, at in os.fwalk(".", dir_fd=folder):
        subfolders.sort()
        for name in sorted(names):
            rel = PurePosixPath(where, name).as_posix()
            if rel == MANIFEST:
                continue
            digest, size = hashlib.sha256(), 0
            with open(os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=at), "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
            files[rel] = {"size": size, "sha256": digest.hexdigest()}
    return files


def _revision(database: Path) -> str | None:
    """The record's Alembic revision (None when it has no schema yet)."""
    connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    finally:
        connection.close()
    return None if row is None else str(row[0])


def _audit_of(root: Path) -> AuditReport:
    """The audit chain of ``root/record.db``, checked against ``root``'s anchor, read-only.

    Raises:
        RecordError: The file is not a readable record.
    """
    from inference.record import HeadAnchor, verify_sqlite_copy

    return verify_sqlite_copy(root / RECORD_FILE, anchor=HeadAnchor(root))


def _problem_lines(report: AuditReport) -> list[str]:
    lines = []
    for problem in report.problems:
        where = f"entry seq {problem.seq}" if problem.seq is not None else "entry without seq"
        row = f" (row id {problem.row_id})" if problem.row_id is not None else ""
        lines.append(f"record.db: audit {where}{row}: {problem.reason}")
    return lines


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


def _backup_bytes(settings: Settings, home: Path, *, logs: bool) -> int:
    """About how many bytes a backup of ``home`` holds (at most: a database with its write-ahead log)."""
    total = 0
    for url in (settings.record_url, settings.tracking_uri):
        database = _sqlite_file(url)
        if database is not None:
            for path in (database, database.with_name(database.name + "-wal")):
                with suppress(OSError):
                    total += path.stat().st_size
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
    staged copy: filling the live disk would stop the server's own writes).

    Raises:
        BackupRefused: A file system has less free space than the backup needs there.
    """
    size = _backup_bytes(settings, home, logs=logs)
    existing = dest
    while not existing.exists():
        existing = existing.parent
    needs: dict[int, tuple[int, Path, list[str]]] = {}
    places = [(existing, "the backup")] + ([(home, "the copy staged in the home")] if staged else [])
    for where, what in places:
        device = where.stat().st_dev
        total, _where, whats = needs.get(device, (_HEADROOM, where, []))
        needs[device] = (total + size, _where, [*whats, what])
    for need, where, whats in needs.values():
        free = shutil.disk_usage(where).free
        if free < need:
            each = f"{_gib(size)} each" if len(whats) > 1 else _gib(size)
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
        if sealing is None:
            files = _write(settings, home, partial, plan, logs=logs, signer=plain_signer, made=made)
        else:
            files = _write_sealed(
                settings, home, partial, plan, logs=logs, recipient=sealing[0], signer=sealing[1]
            )
    except (OSError, sqlite3.Error) as e:
        shutil.rmtree(partial, ignore_errors=True)
        if not existed:
            shutil.rmtree(dest, ignore_errors=True)
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
    from inference.record import HeadAnchor

    live_anchor = HeadAnchor(home).path
    # Read before the record is copied: the anchor only moves forward after commits, so what it names
    # is in the snapshot taken after it.
    anchor_bytes = live_anchor.read_bytes() if live_anchor.is_file() else None
    _record_part(settings, partial, plan)
    _registry_part(settings, partial, plan)
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
    for name in _HOME_TREES:
        _copy_tree(home / name, partial / name, skip=spool_folders, unfollowed=unfollowed)
    for name in _SPOOL_TREES:
        _copy_tree(settings.listener_spool / name, partial / place / name, unfollowed=unfollowed)
    if place == DIMSE_SPOOL_COPY:
        plan.notes.append(
            "The DIMSE spool is outside DXASSIST_HOME: its incoming/ and dead-letter/ are in "
            f"{DIMSE_SPOOL_COPY}/."
        )
    if logs:
        _copy_tree(settings.log_dir, partial / "logs", unfollowed=unfollowed)
    if unfollowed:
        shown = ", ".join(path.relative_to(partial).as_posix() for path in unfollowed[:10])
        more = f" and {len(unfollowed) - 10} more" if len(unfollowed) > 10 else ""
        plan.notes.append(
            f"{len(unfollowed)} symbolic link(s) leading out of their folder (or to no file) were not "
            f"followed and are NOT in this backup: {shown}{more}."
        )
    _anchor_part(partial, anchor_bytes, plan)
    files = _inventory(partial) if made is None else _inventory_at(made)
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
    }
    if signer is not None:
        from inference.security._sealing import sign_statement

        manifest["signed"] = sign_statement(signer, _plain_statement(manifest))
    _publish(partial, manifest)
    return files


def _manifest_sha256(manifest: dict[str, Any]) -> str:
    """The sha256 of a plain backup's manifest without its signature (its canonical JSON): what the
    signature of a plain backup covers, and through the files' sha256 every file."""
    unsigned = {name: value for name, value in manifest.items() if name != "signed"}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _plain_statement(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the backup-signing key signs of a plain backup: its manifest, when and where it was made."""
    return {
        "format": FORMAT,
        "manifest_sha256": _manifest_sha256(manifest),
        "created_at": manifest["created_at"],
        "origin": manifest["origin"],
        "dxassist_version": manifest["dxassist_version"],
    }


def _publish(partial: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` into ``partial``, move everything into its parent (the manifest last: a
    folder without one is not a backup), and put the moves on disk."""
    with open(partial / MANIFEST, "x", encoding="utf-8", opener=_private_file) as handle:
        handle.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    dest = partial.parent
    for entry in sorted(partial.iterdir(), key=lambda p: p.name == MANIFEST):  # the manifest last
        os.rename(entry, dest / entry.name)
    partial.rmdir()
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _origin() -> dict[str, str]:
    """Where a backup is made: the host's name (shown by ``verify`` and ``restore`` with the time, so that
    a backup of another server, or an older one put in place of a newer, is seen). No path: a backup
    names none, it can be moved."""
    return {"host": socket.gethostname()}


def _has_signer(settings: Settings) -> bool:
    """Whether this server has its backup-signing key (made by ``backup signer`` or a sealed backup)."""
    from inference.security._sealing import SIGNER_FILE

    return (settings.keys_dir / SIGNER_FILE).exists()


_SIGNS_PLAIN: Final = (
    "This server signs its plain backups (it has a backup-signing key: `backup signer` was run, or a "
    "sealed backup made), so that custodians can check who made each one and when"
)
_SIGNS_SEALED: Final = (
    "A sealed backup is signed with this server's backup-signing key, so that custodians can check who "
    "made it"
)
_PRINTS_SIGNER: Final = "`backup signer` prints the public key of this server's backup-signing key"


def _signer(settings: Settings, why: str) -> BackupSigner:
    """This server's backup-signing key, opened with ``DXASSIST_SIGNING_KEY_PASSPHRASE``.

    Raises:
        BackupRefused: The key cannot be made or opened: the message says ``why`` it is needed and, for
            a passphrase, whether it is unset or not the key's (never the passphrase itself).
    """
    from inference.security._sealing import SIGNER_FILE, SealError, backup_signer

    secret = settings.security.signing_key_passphrase
    passphrase = secret.get_secret_value().encode() if secret else b""
    try:
        return backup_signer(settings.keys_dir, passphrase or None)
    except SealError as e:
        path = settings.keys_dir / SIGNER_FILE
        try:
            encrypted = b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
        except OSError:
            raise BackupRefused(str(e)) from e
        if encrypted and not passphrase:
            raise BackupRefused(
                f"{why}; its key {path} is encrypted and DXASSIST_SIGNING_KEY_PASSPHRASE is not set. Set "
                "DXASSIST_SIGNING_KEY_PASSPHRASE to the passphrase the key was made with in this command's "
                "environment (a scheduled job's too: cron and systemd timers do not read a login shell's "
                "profile). Nothing was written."
            ) from e
        if encrypted:
            raise BackupRefused(
                f"{why}; DXASSIST_SIGNING_KEY_PASSPHRASE does not open its key {path} (it is not the "
                "passphrase the key was made with). Nothing was written."
            ) from e
        raise BackupRefused(str(e)) from e


def backup_signer_key(settings: Settings, stream: BinaryIO | None = None) -> int:
    """Write this server's backup-signing public key (PEM; the key is made on first use) to ``stream``
    (stdout), its fingerprint on stderr: the file custodians give to ``verify|restore --signer``.

    Raises:
        BackupRefused: The key cannot be made or read.
    """
    signer = _signer(settings, _PRINTS_SIGNER)
    out = stream if stream is not None else sys.stdout.buffer
    out.write(signer.public_pem())
    out.flush()
    sys.stderr.write(f"backup-signing key {signer.fingerprint[:16]} of {settings.resolved_home}\n")
    return 0


def _recipient(path: Path) -> Recipient:
    from inference.security._sealing import SealError, load_recipient

    try:
        return load_recipient(path)
    except SealError as e:
        raise BackupRefused(str(e)) from e


class _Digesting:
    """A file that hashes, and counts, the bytes read or written through it: what is signed or checked
    is then the very bytes written or used, not those of a later read of a file someone else can replace.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self._handle.write(data)


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


def _load_manifest(root: Path) -> Any:
    """The JSON of ``root``'s manifest, read once (None when it cannot be read or is not JSON).

    ``verify`` and ``restore`` read it here only and pass on what they read: whoever can write the
    backup folder could otherwise put another manifest in place between its check (its signature) and
    its use (the files it names).
    """
    try:
        return json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def _sealed_manifest(loaded: Any) -> dict[str, Any] | None:
    """The outer manifest of a sealed backup (``loaded``: :func:`_load_manifest`), or None when it is not
    one."""
    try:
        manifest: dict[str, Any] = loaded
        if not isinstance(manifest, dict) or manifest.get("format") != SEALED_FORMAT:
            return None
        sealed = manifest["sealed"]
        if not (
            isinstance(sealed.get("size"), int)
            and isinstance(sealed.get("sha256"), str)
            and isinstance(sealed.get("recipient"), str)
        ):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    return manifest


def _sealed_problems(root: Path, manifest: dict[str, Any]) -> list[str]:
    sealed = root / SEALED_FILE
    expected = manifest["sealed"]
    if sealed.is_symlink() or not sealed.is_file():
        return [f"{SEALED_FILE}: missing"]
    if sealed.stat().st_size != expected["size"] or _sha256(sealed) != expected["sha256"]:
        return [f"{SEALED_FILE}: altered (its size or sha256 differs from the manifest)"]
    extras = sorted(rel for rel in _files(root) if rel not in (MANIFEST, SEALED_FILE))
    return [f"{_named(rel)}: extra (not in the manifest)" for rel in extras]


def _remove_unlocked(folders: Iterator[Path]) -> None:
    """Remove each of ``folders`` that no running process holds locked (:func:`_locked`): what a
    ``backup`` command killed (-9, the machine stopped) left behind."""
    for entry in folders:
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink(missing_ok=True)
            continue
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # its own process removed it meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # in use by a running command
        else:
            shutil.rmtree(entry, ignore_errors=True)
        finally:
            os.close(fd)


def _locked(folder: Path) -> int:
    """Lock ``folder`` (``flock``, until the descriptor returned is closed) against
    :func:`_remove_unlocked`. A remover that locked it first removes it: what is then written into it
    fails, loudly; nothing is written into a folder that is not locked.

    Raises:
        OSError: ``folder`` was removed meanwhile.
    """
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _clean_unsealing(base: Path) -> None:
    """Remove what an earlier ``verify`` or ``restore`` opened into ``base/.backup-unsealed`` and did not
    remove (killed, the machine stopped): every folder there that no running process holds locked."""
    area = base / UNSEALING
    if area.is_dir() and not area.is_symlink():
        _remove_unlocked(iter(sorted(area.iterdir())))


@contextmanager
def _unsealed(
    root: Path, key: Path, passphrase: bytes | None, base: Path, expected: dict[str, Any]
) -> Iterator[Path]:
    """Open the sealed backup in ``root`` into a new private folder of ``base/.backup-unsealed`` (0700,
    never a shared temporary folder) for the block; removed after it. The bytes opened are hashed as they
    are read and must be the sealed file ``expected`` names (the manifest's ``sealed``, whose size and
    sha256 were checked, and its signature): whoever can write the backup folder could otherwise put
    another sealed file in place between those checks and the opening. The folder is locked (``flock``)
    while open: what a process killed meanwhile leaves is removed by the next ``verify`` or ``restore``
    (:func:`_clean_unsealing`), and a folder in use is not.

    Raises:
        BackupRefused: The key cannot be used, or the sealed file is not this key's, altered or cut short.
    """
    from inference.security._sealing import SealError, load_custodian_key, unseal

    try:
        private = load_custodian_key(key, passphrase)
    except SealError as e:
        raise BackupRefused(str(e)) from e
    area = base / UNSEALING
    try:
        _private_folder(area)
        staging = Path(tempfile.mkdtemp(dir=area))  # 0700
    except OSError as e:
        raise BackupRefused(f"{area} cannot be written ({e.strerror or type(e).__name__}).") from e
    fd = -1
    try:
        try:
            fd = _locked(staging)
            with open(root / SEALED_FILE, "rb") as handle:
                reader = _Digesting(handle)
                unseal(cast("BinaryIO", reader), private, staging, lambda _rel: True)
                while reader.read(_CHUNK):  # what follows the sealed stream is part of the file too
                    pass
        except (SealError, OSError) as e:
            reason = str(e) if isinstance(e, SealError) else (e.strerror or type(e).__name__)
            raise BackupRefused(f"{root / SEALED_FILE} cannot be opened: {reason}") from e
        if (reader.size, reader.digest.hexdigest()) != (expected["size"], expected["sha256"]):
            raise BackupRefused(
                f"{root / SEALED_FILE} is refused, nothing was restored or checked: the file opened is not "
                "the one its manifest and signature name (it was replaced while it was read)."
            )
        yield staging
    finally:  # an interrupt too: what was opened is patient data, never left behind
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)
        with suppress(OSError):
            area.rmdir()  # when no other verify or restore uses it


def _shown(value: Any) -> str:
    """A value of a manifest as a terminal may show it (whoever wrote the medium chose it)."""
    text = value if isinstance(value, str) else "-"
    return "".join(c if c.isprintable() else "?" for c in text[:200]) or "-"


def _shown_seq(value: Any) -> str:
    """An audit position a manifest names, as a terminal may show it (a number, or what :func:`_shown`
    makes of anything else)."""
    return str(value) if isinstance(value, int) else _shown(value)


def _named(rel: str) -> str:
    """A file's path in a backup as a problem line shows it: whoever wrote the medium chose the names in
    its manifest and folders, and a control character would write on the operator's terminal."""
    return "".join(c if c.isprintable() else "?" for c in rel)


def _made(claims: dict[str, Any]) -> str:
    """When and where a backup says it was made: its time and host."""
    origin = claims.get("origin")
    host = origin.get("host") if isinstance(origin, dict) else None
    return f"{_shown(claims.get('created_at'))} on host {_shown(host)}"


def _origin_line(
    root: Path, manifest: dict[str, Any], *, signer: Path | None, any_origin: bool, opening: bool
) -> str:
    """Who made the sealed backup in ``root`` and when, as a line to print: checked against ``signer`` (a
    server's backup-signing public key), or said unchecked.

    Raises:
        BackupRefused: ``signer`` cannot be read; the backup is unsigned, signed by another key, or its
            signature does not verify or names another sealed file; or it is to be opened (``opening``)
            with neither ``signer`` nor ``any_origin``.
    """
    from inference.security._sealing import SealError, check_statement, load_signer_public

    signed = manifest.get("signed")
    if signer is None:
        claims = signed.get("statement") if isinstance(signed, dict) else None
        said = _made(claims if isinstance(claims, dict) else manifest)
        if any_origin:
            return (
                "WARNING: who made this backup is NOT checked (--trust-any-origin): anyone holding the "
                f"custodian's public key can seal a backup. It says it was made {said}."
            )
        if opening:
            raise BackupRefused(
                f"{root}: give --signer SERVER.pub, the backup-signing public key of the server that made "
                "it (`dxassist backup signer` there), to check who made it: anyone holding the custodian's "
                "public key can seal a backup. --trust-any-origin opens it unchecked."
            )
        return f"It says it was made {said} (not checked: give --signer SERVER.pub)."
    try:
        public, fingerprint = load_signer_public(signer)
    except SealError as e:
        raise BackupRefused(str(e)) from e
    try:
        if not isinstance(signed, dict):
            raise SealError(
                "It is not signed (made by a dxassist that did not sign sealed backups, or its signature "
                "was removed)."
            )
        statement = check_statement(signed, public, fingerprint)
    except SealError as e:
        raise BackupRefused(
            f"{root} is refused, nothing was opened: {e} (--trust-any-origin opens it unchecked)"
        ) from e
    sealed = manifest["sealed"]
    named = (statement.get("sealed_sha256"), statement.get("sealed_size"), statement.get("recipient"))
    if named != (sealed["sha256"], sealed["size"], sealed["recipient"]):
        raise BackupRefused(
            f"{root} is refused, nothing was opened: its {SEALED_FILE} is not the one its signature names "
            "(it was replaced)."
        )
    return f"Signed by the backup-signing key {fingerprint[:16]} ({signer}): made {_made(statement)}."


def _outer_problems(outer: dict[str, Any], opened: Path, loaded: Any) -> list[str]:
    """What the outer manifest of a sealed backup says that its sealed content (its manifest ``loaded``
    from ``opened``) does not. The outer manifest is not sealed: whoever can write the medium can change
    the audit head it names."""
    inner, why = _read_manifest(opened, loaded)
    if inner is None:
        return [f"{SEALED_FILE}: its content is not a backup ({why})"]
    problems = []
    if outer.get("record") != inner.get("record"):
        problems.append(
            f"{MANIFEST}: the record and audit head it names are not those sealed inside (it was changed)"
        )
    if outer["sealed"].get("files") != len(inner["files"]):
        problems.append(f"{MANIFEST}: the file count it names is not that sealed inside (it was changed)")
    return problems


# -- verify -----------------------------------------------------------------------------------------


def _read_manifest(root: Path, loaded: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest ``loaded`` from ``root`` (:func:`_load_manifest`), or why there is none usable."""
    path = root / MANIFEST
    if loaded is None and not path.is_file():
        partial = " (an interrupted `backup create` left .partial/)" if (root / PARTIAL).exists() else ""
        return None, f"{root} holds no {MANIFEST}: it is not a complete dxassist backup{partial}."
    try:
        manifest = loaded
        version = manifest.get("format_version", 0)
        record = manifest.get("record") or {}
        ok = (
            manifest["format"] == FORMAT
            and isinstance(version, int)
            and isinstance(record, dict)
            and isinstance(record.get("audit_head") or {}, dict)
            and isinstance(manifest.get("registry") or {}, dict)
            and isinstance(manifest["files"], dict)
            and all(
                isinstance(rel, str)
                and not PurePosixPath(rel).is_absolute()
                and ".." not in PurePosixPath(rel).parts
                and isinstance(entry, dict)
                and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("size"), int)
                for rel, entry in manifest["files"].items()
            )
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        ok = False
    if not ok:
        return None, f"{MANIFEST} is unreadable or not a dxassist backup manifest."
    if version > FORMAT_VERSION:
        return None, f"{MANIFEST} is of a newer format ({manifest['format_version']}); use a newer dxassist."
    return manifest, None


def _file_problems(root: Path, listed: dict[str, dict[str, Any]], *, extras: bool) -> list[str]:
    problems = []
    present = {rel for rel in _files(root) if rel != MANIFEST}
    for rel in sorted(listed):
        path = root / rel
        if rel not in present or path.is_symlink() or not path.is_file():
            problems.append(f"{_named(rel)}: missing")
            continue
        entry = listed[rel]
        if path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
            problems.append(f"{_named(rel)}: altered (its size or sha256 differs from the manifest)")
    if extras:
        problems += [f"{_named(rel)}: extra (not in the manifest)" for rel in sorted(present - set(listed))]
    return problems


def _record_problems(root: Path, manifest: dict[str, Any]) -> tuple[list[str], AuditReport | None]:
    from inference.record import RecordError

    record = manifest.get("record") or {}
    if record.get("kind") != "sqlite" or not (root / RECORD_FILE).is_file():
        return [], None
    try:
        report = _audit_of(root)
    except RecordError:
        return [f"{RECORD_FILE}: cannot be read as a patient record"], None
    problems = _problem_lines(report)
    head = record.get("audit_head") or {}
    if (report.head_seq, report.head_hash) != (head.get("seq"), head.get("hash")):
        problems.append(
            f"{RECORD_FILE}: its audit chain head is seq {report.head_seq}, the manifest names seq "
            f"{_shown_seq(head.get('seq'))} (sha256 {_shown(head.get('hash'))})"
        )
    return problems, report


def _check(root: Path, manifest: dict[str, Any], *, extras: bool) -> tuple[list[str], AuditReport | None]:
    problems = _file_problems(root, manifest["files"], extras=extras)
    record_problems, report = _record_problems(root, manifest)
    return problems + record_problems, report


def backup_verify(
    dest: Path,
    *,
    key: Path | None = None,
    passphrase: bytes | None = None,
    signer: Path | None = None,
    any_origin: bool = False,
    scratch: Path | None = None,
    stream: TextIO | None = None,
) -> int:
    """Check a backup: every file against the manifest (missing, altered, extra), and the copied record's
    audit chain (the checks of ``dxassist audit verify``, read-only) up to the manifest's head. When and
    on which host it was made is printed.

    A sealed backup is checked as written (the sealed file's size and sha256) without ``key``, and opened
    with it (the custodian's private key) into a private folder of ``scratch/.backup-unsealed`` (an
    existing home, or the folder the custodian names; what an earlier verify killed there left is removed
    first), checked as above, removed. Nothing else is written anywhere. Its
    signature is checked against ``signer`` (the backup-signing public key of the server that made
    it); opening it needs ``signer``, or ``any_origin`` to open it unchecked. A plain backup's signature
    (made once the server has a backup-signing key) is checked against ``signer`` when given.

    Returns:
        0 when the backup is intact; 1 naming every problem otherwise.

    Raises:
        BackupRefused: ``dest`` is not a folder; the key cannot open the sealed backup; the sealed backup
            is not signed by ``signer`` (or, to be opened, no ``signer`` was given); ``key`` was given
            for a plain backup, or ``signer`` for one it did not sign (unsigned, or changed since).
        ValueError: ``key`` without ``scratch``.
    """
    out = stream if stream is not None else sys.stdout
    if scratch is not None:
        _clean_unsealing(scratch)
    if not dest.is_dir():
        raise BackupRefused(f"{dest} is not a folder.")
    loaded = _load_manifest(dest)
    sealed = _sealed_manifest(loaded)
    if sealed is not None:
        problems = _sealed_problems(dest, sealed)
        if problems:
            out.write(f"backup BROKEN: {len(problems)} problem(s) in {dest}\n")
            for line in problems:
                out.write(f"  {line}\n")
            return 1
        origin = _origin_line(dest, sealed, signer=signer, any_origin=any_origin, opening=key is not None)
        if key is None:
            out.write(f"{origin}\n")
            out.write(
                f"sealed backup intact as written ({SEALED_FILE}: size and sha256 as in its manifest; "
                f"sealed for the custodian key {_shown(sealed['sealed']['recipient'])[:16]}). Its content is "
                "checked only with that key: `dxassist backup verify DEST --key CUSTODIAN.key`.\n"
            )
            return 0
        out.write(f"{origin}\n")
        if scratch is None:
            raise ValueError("Opening a sealed backup needs a folder of its own to open it in (scratch).")
        with _unsealed(dest, key, passphrase, scratch, sealed["sealed"]) as opened:
            inner = _load_manifest(opened)
            problems = _outer_problems(sealed, opened, inner)
            if problems:
                out.write(f"backup BROKEN: {len(problems)} problem(s) in {dest}\n")
                for line in problems:
                    out.write(f"  {line}\n")
                return 1
            out.write("sealed backup opened with the custodian key; its content:\n")
            return _verify_plain(opened, inner, out)
    made_by = _plain_origin(dest, loaded, key=key, signer=signer, any_origin=any_origin)
    if made_by is not None:
        out.write(f"{made_by}\n")
    return _verify_plain(dest, loaded, out)


def _verify_plain(dest: Path, loaded: Any, out: TextIO) -> int:
    """Check the plain backup in ``dest`` against its manifest as ``loaded`` (read once, and checked
    before when signed): the body of :func:`backup_verify`."""
    manifest, why = _read_manifest(dest, loaded)
    if manifest is None:
        out.write(f"backup NOT usable: {why}\n")
        return 1
    problems, report = _check(dest, manifest, extras=True)
    if problems:
        out.write(f"backup BROKEN: {len(problems)} problem(s) in {dest}\n")
        for line in problems:
            out.write(f"  {line}\n")
        return 1
    out.write(f"backup intact: {len(manifest['files'])} files as listed in its manifest")
    if report is not None:
        out.write(f"; audit trail intact up to head seq {report.head_seq} sha256 {report.head_hash}")
    out.write(f" (taken {_made(manifest)} by dxassist {_shown(manifest.get('dxassist_version'))})\n")
    for note in _restore_notes(manifest):
        out.write(f"Note: {note}\n")
    return 0


def _restore_notes(manifest: dict[str, Any]) -> list[str]:
    notes = []
    if (manifest.get("record") or {}).get("kind") == "external":
        notes.append("the patient record is not in this backup (external database): restore it from pg_dump.")
    if (manifest.get("registry") or {}).get("kind") == "external":
        notes.append("the MLflow registry's database is not in this backup (external store).")
    if manifest.get("dimse_spool") == DIMSE_SPOOL_COPY:
        notes.append(
            f"the DIMSE spool was outside the home: move {DIMSE_SPOOL_COPY}/ to DXASSIST_DIMSE_SPOOL."
        )
    return notes


# -- restore ----------------------------------------------------------------------------------------


def backup_restore(
    backup: Path,
    home: Path,
    *,
    key: Path | None = None,
    passphrase: bytes | None = None,
    signer: Path | None = None,
    any_origin: bool = False,
    stream: TextIO | None = None,
) -> int:
    """Copy a verified backup into ``home`` (a new or empty folder), then check the copy. When and on
    which host it was made is printed.

    A sealed backup needs ``key`` (the custodian's private key) and ``signer`` (the backup-signing public
    key of the server that made it; ``any_origin``: not checked): it is opened into the staging folder
    and restored from there. A plain backup's signature is checked against ``signer`` when given, before
    anything is copied. Everything is copied and checked in a private staging folder beside ``home``
    (:func:`_restoring`), then moved into place: a restore killed meanwhile (-9, the machine stopped)
    leaves ``home`` as it was and that hidden folder, which the next restore into ``home`` removes first.

    Returns:
        0 when the backup was restored and the restored files and audit trail verify; 1 when the backup
        is broken or a file changes while it is copied (each is checked on the bytes copied): what was
        copied is then removed.

    Raises:
        BackupRefused: ``backup`` is not a folder, ``home`` is not a new or empty folder, or it cannot
            be written; a sealed backup is not signed by ``signer`` (or neither it nor ``any_origin``
            was given), or ``key`` cannot open it; ``key`` was given for a plain backup, or ``signer``
            for one it did not sign (unsigned, or changed since).
    """
    out = stream if stream is not None else sys.stdout
    if not backup.is_dir():
        raise BackupRefused(f"{backup} is not a folder.")
    _clean_restoring(home)
    if home.is_dir():
        _clean_unsealing(home)  # what a restore of an earlier dxassist left
        with suppress(OSError):
            (home / UNSEALING).rmdir()
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise BackupRefused(
            f"{home} is not a new or empty folder; a restore never writes over an installation."
        )
    loaded = _load_manifest(backup)
    sealed = _sealed_manifest(loaded)
    if sealed is not None:
        problems = _sealed_problems(backup, sealed)
        if problems:
            out.write(
                f"restore refused: the backup is BROKEN ({len(problems)} problem(s)); nothing was copied\n"
            )
            for line in problems:
                out.write(f"  {line}\n")
            return 1
        if key is None:
            raise BackupRefused(
                f"{backup} is sealed (for the custodian key {_shown(sealed['sealed']['recipient'])[:16]}): "
                "give its private key with --key."
            )
        out.write(f"{_origin_line(backup, sealed, signer=signer, any_origin=any_origin, opening=True)}\n")
        with _restoring(home) as work, _unsealed(backup, key, passphrase, work, sealed["sealed"]) as opened:
            inner = _load_manifest(opened)
            problems = _outer_problems(sealed, opened, inner)
            if problems:
                out.write(f"restore refused: the backup is BROKEN ({len(problems)} problem(s)); ")
                out.write("nothing was copied\n")
                for line in problems:
                    out.write(f"  {line}\n")
                return 1
            return _restore_files(opened, home, work, out, inner)
    made_by = _plain_origin(backup, loaded, key=key, signer=signer, any_origin=any_origin)
    if made_by is not None:
        out.write(f"{made_by}\n")
    with _restoring(home) as work:
        return _restore_files(backup, home, work, out, loaded)


def _plain_origin(
    root: Path, loaded: Any, *, key: Path | None, signer: Path | None, any_origin: bool
) -> str | None:
    """Who made the plain backup in ``root`` and when, as a line to print (None for an unsigned backup
    checked without ``signer``): the signature of its manifest as ``loaded`` (:func:`_load_manifest`: the
    manifest then used, not read again) checked against ``signer``, or said unchecked.

    A plain backup is refused where a sealed one was expected (``key``), and where its maker is to be
    checked (``signer``) when it is unsigned: anyone can make a plain backup, so taking an unsigned one
    would pass the check of who made it by not signing it at all.

    Raises:
        BackupRefused: ``key`` was given; ``signer`` cannot be read, or the backup is unsigned, signed by
            another key, or its manifest was changed after it was signed.
    """
    from inference.security._sealing import SealError, check_statement, load_signer_public

    if key is not None:
        raise BackupRefused(
            f"{root} is not sealed (no {SEALED_FILE} named by a sealed manifest), though --key was given: "
            "a plain backup needs no custodian key to be made, anyone can make one. Nothing was opened or "
            "copied; without --key it is checked as a plain backup."
        )
    manifest = loaded
    signed = manifest.get("signed") if isinstance(manifest, dict) else None
    if signer is None:
        if not isinstance(manifest, dict) or signed is None:
            return None
        claims = signed.get("statement") if isinstance(signed, dict) else None
        said = _made(claims if isinstance(claims, dict) else manifest)
        if any_origin:
            return (
                "WARNING: who made this backup is NOT checked (--trust-any-origin); "
                f"it says it was made {said}."
            )
        return f"It says it was made {said} (signed; not checked: give --signer SERVER.pub)."
    try:
        public, fingerprint = load_signer_public(signer)
    except SealError as e:
        raise BackupRefused(str(e)) from e
    try:
        if not isinstance(manifest, dict) or not isinstance(signed, dict):
            raise SealError(
                "It is not signed (made by a server without a backup-signing key, by a dxassist that did "
                "not sign plain backups, or its signature was removed)"
            )
        statement = check_statement(signed, public, fingerprint)
    except SealError as e:
        raise BackupRefused(
            f"{root} is refused, nothing was opened or copied: {str(e).rstrip('.')}. "
            "--trust-any-origin (instead of --signer) takes it unchecked."
        ) from e
    if statement.get("format") != FORMAT or statement.get("manifest_sha256") != _manifest_sha256(manifest):
        raise BackupRefused(
            f"{root} is refused, nothing was opened or copied: its {MANIFEST} is not the one its signature "
            "names (it was changed after the backup was made)."
        )
    return f"Signed by the backup-signing key {fingerprint[:16]} ({signer}): made {_made(statement)}."


def _copy_checked(source: Path, target: Path | None, entry: dict[str, Any]) -> str | None:
    """Copy ``source`` to ``target`` (0600, on disk before it returns; ``target`` None: only read it),
    hashing the very bytes copied; why they are not the file ``entry`` names (None when they are).

    The bytes checked are the bytes written: whoever can write the backup cannot put another file in
    place between a check and the copy. A link, or anything not a regular file, is not read.
    """
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return "missing"
        raise
    with open(fd, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            return "missing"
        digest, size = hashlib.sha256(), 0
        writer = None
        if target is not None:
            _private_folder(target.parent)
            writer = open(target, "xb", opener=_private_file)  # noqa: SIM115 - closed below
        try:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if writer is not None:
                    writer.write(chunk)
            if writer is not None:
                writer.flush()
                os.fsync(writer.fileno())
        finally:
            if writer is not None:
                writer.close()
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        return "altered (its size or sha256 differs from the manifest)"
    return None


def _staged_inside(home: Path) -> bool:
    """Whether a restore into ``home`` is staged inside it: it is a mount point (a volume: a folder
    beside it is on another file system) or its parent cannot be written."""
    return home.is_dir() and (os.path.ismount(home) or not os.access(home.parent, os.W_OK))


def _staging_places(home: Path) -> list[tuple[Path, str]]:
    """Where a restore into ``home`` stages (folder, name's start): beside it, or inside it."""
    return [(home.parent, f".{home.name}{RESTORING}"), (home, RESTORING)]


def _clean_restoring(home: Path) -> None:
    """Remove what a restore into ``home`` killed (-9, the machine stopped) staged beside or inside it
    and did not move into place: every such folder no running restore holds locked."""
    home = Path(os.path.abspath(home))
    for base, start in _staging_places(home):
        if base.is_dir() and not base.is_symlink():
            _remove_unlocked(iter(sorted(base.glob(f"{start}*"))))


@contextmanager
def _restoring(home: Path) -> Iterator[Path]:
    """A new private folder (0700, locked: :func:`_clean_restoring` leaves it while in use) a restore
    into ``home`` is staged in for the block, beside the home (or inside it, :func:`_staged_inside`):
    the restored home is made in its ``home/`` and moved into place whole once checked; removed after,
    whatever happens. A restore killed meanwhile leaves it, never a half-restored home; the next restore
    removes it.

    Raises:
        BackupRefused: The folder cannot be made.
    """
    home = Path(os.path.abspath(home))
    base, start = _staging_places(home)[1 if _staged_inside(home) else 0]
    try:
        _private_folder(base)
        work = Path(tempfile.mkdtemp(prefix=start, dir=base))  # 0700
    except OSError as e:
        raise BackupRefused(f"{base} cannot be written ({e.strerror or type(e).__name__}).") from e
    fd = -1
    try:
        try:
            fd = _locked(work)
        except OSError as e:
            raise BackupRefused(f"{work} cannot be written ({e.strerror or type(e).__name__}).") from e
        yield work
    finally:  # an interrupt too: what was copied is patient data, never left behind
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(work, ignore_errors=True)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_into_place(staged: Path, home: Path) -> None:
    """Move the checked home ``staged`` to ``home`` (absent or empty): one rename, beside it; each of its
    entries renamed into it when staged inside it (the record last). The moves are put on disk."""
    if staged.parent.parent == home:
        for entry in sorted(staged.iterdir(), key=lambda p: p.name == RECORD_FILE):
            os.rename(entry, home / entry.name)
        _fsync_folder(home)
        return
    if home.is_dir():
        staged.chmod(stat.S_IMODE(home.stat().st_mode))  # an empty home made for it keeps its mode
    os.rename(staged, home)  # onto an empty folder too; refused if something was written in it meanwhile
    _fsync_folder(home.parent)


def _restore_files(backup: Path, home: Path, work: Path, out: TextIO, loaded: Any) -> int:
    """The plain backup in ``backup`` (its manifest as ``loaded``) copied into ``work/home``, each file
    checked on the bytes copied, then the copied record's audit trail checked there, and only then moved
    to ``home`` (the body of :func:`backup_restore`, ``home`` checked new or empty by it; ``work`` from
    :func:`_restoring`). On any problem nothing is moved: a home that does not verify is never left to be
    started."""
    manifest, why = _read_manifest(backup, loaded)
    if manifest is None:
        out.write(f"restore refused: {why}\n")
        return 1
    present = {rel for rel in _files(backup) if rel != MANIFEST}
    staged = work / "home"
    problems: list[str] = []
    try:
        _private_folder(staged)
        for rel in sorted(manifest["files"]):
            if rel not in present:
                problems.append(f"{_named(rel)}: missing")
                continue
            # After a first problem the rest is only read, to name every problem.
            problem = _copy_checked(backup / rel, None if problems else staged / rel, manifest["files"][rel])
            if problem is not None:
                problems.append(f"{_named(rel)}: {problem}")
        report = None
        if not problems:
            problems, report = _record_problems(staged, manifest)
        if not problems:
            _move_into_place(staged, Path(os.path.abspath(home)))
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise BackupRefused(
            f"{home} could not be written ({reason}); what was copied was removed. Nothing was restored."
        ) from e
    if problems:
        out.write(
            f"restore refused: the backup is BROKEN ({len(problems)} problem(s)); nothing was restored\n"
        )
        for line in problems:
            out.write(f"  {line}\n")
        return 1
    out.write(f"restored {len(manifest['files'])} files into {home}, from a backup made {_made(manifest)}")
    if report is not None:
        out.write(f"; audit trail intact up to head seq {report.head_seq} sha256 {report.head_hash}")
    out.write(".\n")
    for note in _restore_notes(manifest):
        out.write(f"Note: {note}\n")
    out.write(f"Start the processes with DXASSIST_HOME={home}, then run `dxassist audit verify`.\n")
    return 0
