"""The bytes of the message an association is sending are counted on that association. They were kept in
a table keyed by ``id(association)``: an association cut in the middle of an instance left its count
behind, and the next association Python placed at the same address started from it, so a valid instance
was aborted as too large."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any, cast

from inference.dimse import _listener


class _Association:
    """What the byte count touches of a pynetdicom association."""

    def __init__(self) -> None:
        self.aborted = False
        self.dimse = None

    def abort(self, block: bool = True) -> None:
        self.aborted = True


def test_a_new_association_starts_from_zero_even_at_a_reused_address() -> None:
    limit = 10 << 20
    node = _listener._Node(
        collector=cast(Any, None),
        limits=cast(Any, SimpleNamespace(max_instance_bytes=limit)),
        target_size=None,
    )
    chunk = b"\0" * (limit // 2 + _listener._FRAMING_SLACK // 2 + 1)
    cut = _Association()
    _listener._count_data(SimpleNamespace(assoc=cut, data=chunk), node)  # then the peer goes away
    address = id(cut)
    del cut
    gc.collect()
    made = []  # kept alive, so that each new one takes another free place until the freed one comes up
    for _ in range(100_000):  # CPython gives a freed object's memory to a later one of its size
        fresh = _Association()
        if id(fresh) == address:
            break
        made.append(fresh)
    assert id(fresh) == address, "no association at the freed address: the case cannot be made here"
    _listener._count_data(SimpleNamespace(assoc=fresh, data=chunk), node)
    assert not fresh.aborted  # its own half of the limit only
