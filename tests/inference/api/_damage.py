"""Helpers of the picture tests: what the record keeps for drawing a result's pictures, read back, and
damaged as a disk fault or a bad restore would."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text

from inference.analysis import StoredRendering
from inference.record import Record


def stored_rendering(record_url: str, result_id: str) -> StoredRendering:
    """What the record keeps for drawing a result's pictures."""
    record = Record(record_url)
    try:
        data = record.results.rendering(result_id=result_id)
    finally:
        record.close()
    assert data is not None
    return StoredRendering(display=data.display, cams=data.cams, geometry=data.geometry)


def overwrite_rendering(record_url: str, result_id: str, **columns: bytes) -> None:
    """Overwrite columns of a result's stored rendering (``display``, ``cams``) behind the server's back."""
    assignments = ", ".join(f"{name} = :{name}" for name in columns)  # column names from the tests
    engine = create_engine(record_url)
    try:
        with engine.begin() as connection:
            changed = connection.execute(
                text(f"UPDATE renderings SET {assignments} WHERE result_id = :rid"),
                {**columns, "rid": result_id},
            )
            assert changed.rowcount == 1
    finally:
        engine.dispose()


def without_map(cams: bytes, code: str) -> bytes:
    """Stored maps (an ``npz``) in which ``code``'s map is no longer a map (an empty array)."""
    with np.load(io.BytesIO(cams)) as stored:
        maps: dict[str, Any] = {name: stored[name] for name in stored.files}
    maps[code] = np.zeros(0, dtype=np.float16)
    damaged = io.BytesIO()
    np.savez_compressed(damaged, **maps)
    return damaged.getvalue()
