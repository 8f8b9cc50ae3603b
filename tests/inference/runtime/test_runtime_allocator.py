"""DXASSIST_ALLOCATOR_KEEP_BYTES: a freed radiograph-sized buffer stays in the process for the next one.

Each case runs in a fresh interpreter (the setting is process-wide) and reads glibc's own account of its
heap (``mallinfo2``): with the allocator configured, an 8 MB block comes from the heap and, once freed,
is still there to reuse; with ``0`` glibc serves it with ``mmap`` and hands it straight back.
"""

from __future__ import annotations

import json
import subprocess
import sys

from inference.runtime import configure_allocator

_PROBE = """
import ctypes, json, sys
from inference.runtime import configure_allocator

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
taken = configure_allocator(int(sys.argv[1]))
before = libc.mallinfo2()
buffer = bytearray(8 * 1024 * 1024)
during = libc.mallinfo2()
del buffer
after = libc.mallinfo2()
print(json.dumps({
    "taken": taken,
    "mmapped_for_it": during.hblkhd - before.hblkhd,
    "kept_after_free": after.fordblks - before.fordblks,
}))
"""


def _probe(keep_bytes: int) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(keep_bytes)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _glibc() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


def test_a_freed_8_mb_buffer_is_kept_for_reuse_when_configured() -> None:
    assert _glibc(), "the product's images and CI run on glibc, whose allocator this configures"
    kept = _probe(256 * 1024 * 1024)
    assert kept["taken"] == 1
    assert kept["mmapped_for_it"] == 0  # served from the heap
    assert kept["kept_after_free"] >= 7 * 1024 * 1024  # and still there once freed (most of it: some
    # of the 8 MiB came from free space the heap already had)

    default = _probe(0)
    assert default["taken"] == 0
    assert default["mmapped_for_it"] >= 8 * 1024 * 1024  # glibc's own choice: a mapping of its own
    assert default["kept_after_free"] < 1024 * 1024  # handed back on free


def test_zero_changes_nothing() -> None:
    assert configure_allocator(0) is False
