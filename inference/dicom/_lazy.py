"""A study's instances as a sequence of bytes, each loaded only when it is asked for.

``read_study`` takes any ``Sequence[bytes]``: the DIMSE listener hands it files in its spool, batch
scoring files in a folder or instances retrieved one by one from a DICOMweb server. Loading each when
reached keeps one undecoded instance of a study in memory at a time, not all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, overload

T = TypeVar("T")


class LazyInstances(Sequence[bytes], Generic[T]):
    """``load(item)`` for each of ``items``, called when that index (or a slice over it) is read.

    Args:
        items: What names each instance (a path, a URL ...), in order.
        load: Reads one instance's bytes; its exceptions (too large, unreachable) reach the reader.
    """

    def __init__(self, items: Sequence[T], load: Callable[[T], bytes]) -> None:
        self._items = list(items)
        self._load = load

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self._load(item) for item in self._items[index]]
        return self._load(self._items[index])
