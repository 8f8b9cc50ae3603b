"""A process-wide budget that bounds how many bytes of DICOM are being decoded at once.

Decoding expands a file several times over (pydicom's copy of the pixel data, the decoded array, its
float conversion). Every :func:`inference.dicom.read_instance` holds the budget while it decodes, for
the largest of its file's size, its inflated dataset (Deflated Explicit VR Little Endian) and the frame
its header declares once decoded (a few kilobytes of JPEG 2000 may declare megapixels), so however many
uploads, STOW-RS requests and C-STOREs arrive together, at most ``capacity`` bytes are being decoded at
one time; the others wait their turn. A single file larger than the capacity still gets through, alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_CAPACITY = 512 * 1024 * 1024


class DecodeBudget:
    """A counting budget in bytes (thread-safe; waiting blocks the calling thread).

    Args:
        capacity: Bytes of DICOM files that may be decoded at the same time.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, int(capacity))
        self._used = 0
        self._cond = threading.Condition()

    @property
    def in_use(self) -> int:
        """Bytes held right now."""
        with self._cond:
            return self._used

    @contextmanager
    def hold(self, cost: int) -> Iterator[None]:
        """Hold ``cost`` bytes of the budget (at most all of it) for the duration of the block."""
        cost = min(max(int(cost), 1), self.capacity)
        with self._cond:
            self._cond.wait_for(lambda: self._used + cost <= self.capacity)
            self._used += cost
        try:
            yield
        finally:
            with self._cond:
                self._used -= cost
                self._cond.notify_all()


_budget = DecodeBudget(DEFAULT_CAPACITY)


def decode_budget() -> DecodeBudget:
    """The process's budget."""
    return _budget


def configure_decode_budget(capacity: int) -> DecodeBudget:
    """Set the process's budget (at start, from ``DXASSIST_MAX_DECODE_BYTES``)."""
    global _budget
    if _budget.capacity != capacity:
        _budget = DecodeBudget(capacity)
    return _budget
