"""The manifest of a backup: how it is read, written (published last), hashed and signed, and the audit
trail of the record it names.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.record import AuditReport

from inference._backup.files import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PARTIAL,
    RECORD_FILE,
    SEALED_FORMAT,
    _private_file,
    _shown,
)


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


def _made(claims: dict[str, Any]) -> str:
    """When and where a backup says it was made: its time and host."""
    origin = claims.get("origin")
    host = origin.get("host") if isinstance(origin, dict) else None
    return f"{_shown(claims.get('created_at'))} on host {_shown(host)}"


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
