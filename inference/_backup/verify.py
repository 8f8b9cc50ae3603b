"""``dxassist backup verify``: every file of a backup against its manifest, and its record's audit trail."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from inference.record import AuditReport

from inference._backup.files import (
    ANCHOR_FILE,
    ANCHOR_KEY_FILE,
    DIMSE_SPOOL_COPY,
    MANIFEST,
    RECORD_FILE,
    SEALED_FILE,
    BackupRefused,
    _copy_checked,
    _files,
    _locked,
    _named,
    _remove_unlocked,
    _sha256,
    _shown,
    _shown_seq,
    _stopped_as_interrupted,
    _unreadable,
)
from inference._backup.manifest import (
    _audit_of,
    _load_manifest,
    _made,
    _problem_lines,
    _read_manifest,
    _sealed_manifest,
)
from inference._backup.sealed import _clean_unsealing, _outer_problems, _sealed_problems, _unsealed
from inference._backup.signing import _origin_line, _plain_origin

_AUDITED: Final = (RECORD_FILE, ANCHOR_FILE, ANCHOR_KEY_FILE)
"""The files the audit trail of a backup is checked with: its record, its anchor and the anchor's key."""


VERIFYING: Final = ".dxassist-backup-verify-"
"""The name's start of the private folder (0700, in the temporary folder) a plain ``verify`` copies
:data:`_AUDITED` into, as it hashes them, to check the audit trail on the very bytes it hashed."""


def _file_problems(
    root: Path, listed: dict[str, dict[str, Any]], *, extras: bool, copies: Path | None = None
) -> list[str]:
    """Every file of ``listed`` checked in ``root`` (missing, altered; extra when ``extras``); those of
    :data:`_AUDITED` copied into ``copies`` as they are hashed, when given."""
    problems = []
    present = {rel for rel in _files(root) if rel != MANIFEST}
    for rel in sorted(listed):
        path = root / rel
        if rel not in present or path.is_symlink() or not path.is_file():
            problems.append(f"{_named(rel)}: missing")
            continue
        entry = listed[rel]
        if copies is not None and rel in _AUDITED:
            problem = _copy_checked(path, copies / rel, entry)
            if problem is not None:
                problems.append(f"{_named(rel)}: {problem}")
        else:
            try:
                intact = path.stat().st_size == entry["size"] and _sha256(path) == entry["sha256"]
            except OSError as e:
                problems.append(f"{_named(rel)}: {_unreadable(e)}")
                continue
            if not intact:
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


def _check(root: Path, manifest: dict[str, Any], *, private: bool) -> tuple[list[str], AuditReport | None]:
    """Every file of the backup in ``root`` against ``manifest``, then its record's audit trail.

    Unless ``root`` is ``private`` (a sealed backup this process opened into a folder of its own), others
    may write it while it is read: the record, its anchor and the anchor's key are then copied into a
    private folder as they are hashed, and the trail is checked on those copies, the bytes hashed.

    Raises:
        BackupRefused: The private copy cannot be made (no room in the temporary folder).
    """
    if private:
        problems = _file_problems(root, manifest["files"], extras=True)
        record_problems, report = _record_problems(root, manifest)
        return problems + record_problems, report
    with _verifying() as copies:
        _refuse_without_room(copies, manifest["files"])
        try:
            problems = _file_problems(root, manifest["files"], extras=True, copies=copies)
        except OSError as e:
            raise BackupRefused(
                f"{RECORD_FILE} could not be copied into a private folder of {copies.parent} "
                f"({e.strerror or type(e).__name__}), to check its audit trail on the bytes hashed: "
                "set TMPDIR to a folder with room for it. Nothing was kept."
            ) from e
        record_problems, report = _record_problems(copies, manifest)
    return problems + record_problems, report


def _refuse_without_room(copies: Path, listed: dict[str, dict[str, Any]]) -> None:
    """Refuse, before anything is copied, a check whose private copy the temporary folder cannot hold:
    copying until the disk is full would stop whatever else writes there (the server's own files when it
    is this host's ``/tmp``).

    Raises:
        BackupRefused: The file system of ``copies`` has less free space than the copies need.
    """
    need = sum(max(int(listed[rel]["size"]), 0) for rel in _AUDITED if rel in listed)
    free = shutil.disk_usage(copies).free
    if free < need:
        raise BackupRefused(
            f"{RECORD_FILE} is checked on a private copy (its audit trail on the bytes hashed), made in the "
            f"temporary folder {copies.parent}: it needs {_mib(need)} there and {_mib(free)} are free. Set "
            "TMPDIR to a folder with room for it. Nothing was copied."
        )


def _mib(size: int) -> str:
    return f"{-(-size // (1 << 20))} MiB" if size >= 1 << 20 else f"{size} bytes"


def _mine(entry: Path) -> bool:
    """Whether ``entry`` (not followed) belongs to this user: others' folders are theirs to clean."""
    try:
        return entry.lstat().st_uid == os.geteuid()
    except OSError:
        return False


@contextmanager
def _verifying() -> Iterator[Path]:
    """A new private folder (0700, locked) of the temporary folder for the block, removed after; what a
    ``verify`` killed meanwhile (-9, the machine stopped) left there is removed by the next one.

    Raises:
        BackupRefused: The folder cannot be made.
    """
    base = Path(tempfile.gettempdir())
    _remove_unlocked(entry for entry in sorted(base.glob(f"{VERIFYING}*")) if _mine(entry))
    try:
        work = Path(tempfile.mkdtemp(prefix=VERIFYING, dir=base))  # 0700
        fd = _locked(work)
    except OSError as e:
        raise BackupRefused(f"{base} cannot be written ({e.strerror or type(e).__name__}).") from e
    try:
        with _stopped_as_interrupted():
            yield work
    finally:  # an interrupt too (SIGTERM included): the copy is patient data, never left behind
        os.close(fd)
        shutil.rmtree(work, ignore_errors=True)


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
            return _verify_plain(opened, inner, out, private=True)
    made_by = _plain_origin(dest, loaded, key=key, signer=signer, any_origin=any_origin)
    if made_by is not None:
        out.write(f"{made_by}\n")
    return _verify_plain(dest, loaded, out, private=False)


def _verify_plain(dest: Path, loaded: Any, out: TextIO, *, private: bool) -> int:
    """Check the plain backup in ``dest`` against its manifest as ``loaded`` (read once, and checked
    before when signed): the body of :func:`backup_verify`. ``private``: :func:`_check`."""
    manifest, why = _read_manifest(dest, loaded)
    if manifest is None:
        out.write(f"backup NOT usable: {why}\n")
        return 1
    problems, report = _check(dest, manifest, private=private)
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
