"""sha256 of model files, remembered per (path, size, mtime, inode) so polling stays cheap."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_memo: dict[tuple[str, int, int, int], str] = {}
_lock = threading.Lock()


def sha256_file(path: Path) -> str:
    """Hash a file in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_cached(path: Path) -> str:
    """Hash a file, reusing the last result while its size, mtime and inode are unchanged.

    A rewrite of the file (tampering included) changes its mtime or inode, so it is hashed again.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    with _lock:
        known = _memo.get(key)
    if known is not None:
        return known
    value = sha256_file(path)
    with _lock:
        _memo[key] = value
    return value
