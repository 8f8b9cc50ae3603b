"""The C allocator, told to keep freed blocks for reuse instead of handing them back at once (glibc).

Each radiograph passes through buffers of megabytes: the upload's body, the file's bytes, the decoded
pixels, their float copies. glibc serves blocks over 128 KiB with fresh ``mmap`` pages and gives them
back on ``free``, so every request faults in every page of every buffer again: on the 2-core benchmark
VM, joining and copying an 8 MB body and converting it to float took 16.7 ms that way and 2.8 ms with the
blocks kept (``benchmarks/README.md``). With :func:`configure_allocator`, blocks up to 32 MiB (glibc's
largest ``M_MMAP_THRESHOLD`` on 64-bit) come from the heap, and up to ``keep_bytes`` of freed memory at
the top of a heap stays mapped for the next request (``M_TRIM_THRESHOLD``). Peak memory is what the
work needs, as before; what changes is that the process does not shrink back between requests.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from typing import Final

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
MMAP_THRESHOLD_BYTES: Final = 32 * 1024 * 1024
"""Blocks up to this size come from the heap once the allocator is configured (glibc's 64-bit maximum)."""


def configure_allocator(keep_bytes: int) -> bool:
    """Keep up to ``keep_bytes`` of freed memory for reuse (0: leave the allocator as it is).

    Returns:
        True when glibc took both settings; False elsewhere (another C library, another system) or
        with ``keep_bytes`` 0, where nothing is changed.
    """
    if keep_bytes <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    keep = min(int(keep_bytes), 2**31 - 1)
    taken = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, keep))
    if not taken:
        logger.warning("the C allocator refused DXASSIST_ALLOCATOR_KEEP_BYTES; it is left as it was")
    return taken
