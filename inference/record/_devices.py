"""The Devices of the record (one per model version): what the record completes on them once filed."""

from __future__ import annotations

from typing import Final, cast

from sqlalchemy import Table, bindparam, update

from inference.record._database import Database
from inference.record._inputs import ModelRef
from inference.record._models import Device
from inference.record._types import utcnow

_DEVICES: Final = cast(Table, Device.__table__)
# One conditional UPDATE: two servers putting the same version into service complete it once.
_COMPLETE: Final = (
    update(_DEVICES)
    .where(
        _DEVICES.c.model_name == bindparam("name"),
        _DEVICES.c.model_version == bindparam("version_no"),
        _DEVICES.c.model_sha256 == bindparam("sha256"),
        _DEVICES.c.training.is_(None),
    )
    .values(
        training=bindparam("said"),
        training_data=bindparam("data_line"),
        updated=bindparam("at"),
        version=_DEVICES.c.version + 1,
    )
)


class Devices:
    """The record's Devices (model versions)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def in_service(self, *, model: ModelRef) -> bool:
        """Complete the Device of a model version put into service with what its file says it was trained
        on, when the Device says nothing of it (filed before migration 0022 by results that never said it):
        it says it from now on, served or not, as its next version (``meta.versionId``, ``updated``).

        Returns:
            Whether the Device changed (False: none filed for this exact version, or it says it already).

        Raises:
            RecordError: The record failed.
        """
        if model.training is None:
            return False
        params = {
            "name": model.name,
            "version_no": model.version,
            "sha256": model.sha256,
            "said": model.training,
            "data_line": model.training_data,
            "at": utcnow(),
        }
        return self._db.write(lambda session: getattr(session.execute(_COMPLETE, params), "rowcount", 0) > 0)
