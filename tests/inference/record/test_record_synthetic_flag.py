"""A result keeps whether its model was trained on synthetic data only, as a flag, on both backends.

Results filed before the flag was kept still read as synthetic from the sentence the server wrote in them
then; a result filed now is read from its flag, whatever its warnings say.
"""

from __future__ import annotations

import json
from dataclasses import replace

from _record_data import CXR_MODEL, imaging, triage
from sqlalchemy import text

from inference.record import Record

BEFORE_FLAG = (
    "This model was trained on synthetic data only; its output has not been validated on real patients "
    "and must not be used for diagnosis."
)


def _drop_flag(record: Record, result_id: str) -> None:
    """The row as a server before the flag filed it: the payload without ``synthetic``."""
    with record.engine.begin() as connection:
        payload = connection.execute(
            text("SELECT payload FROM results WHERE id = :id"), {"id": result_id}
        ).scalar_one()
        payload = json.loads(payload) if isinstance(payload, str) else dict(payload)
        del payload["synthetic"]
        connection.execute(
            text("UPDATE results SET payload = :payload WHERE id = :id"),
            {"payload": json.dumps(payload), "id": result_id},
        )


def test_the_flag_is_filed_with_the_result_whatever_the_warnings_say(record: Record) -> None:
    synthetic = replace(CXR_MODEL, version="9", synthetic=True)
    reworded = replace(imaging(), model=synthetic, warnings=("Entraîné sur des données de synthèse.",))
    stored = record.results.save_imaging(data=reworded)
    result = record.results.get(result_id=stored.result_id)
    assert result is not None and result.model.synthetic is True

    # A model trained on real data whose warning mentions the word is not marked.
    real = replace(
        imaging(), warnings=("Trained on Hopital Nord's radiographs with synthetic augmentation.",)
    )
    for stored in (record.results.save_imaging(data=real), record.results.save_triage(data=triage())):
        assert stored.result is not None and stored.result.model.synthetic is False


def test_a_result_filed_before_the_flag_reads_from_the_sentence_written_then(record: Record) -> None:
    old_synthetic = record.results.save_imaging(data=replace(imaging(), warnings=(BEFORE_FLAG,)))
    old_real = record.results.save_triage(
        data=replace(triage(), warnings=("Model vitals-triage version 2 ...",))
    )
    for stored in (old_synthetic, old_real):
        _drop_flag(record, stored.result_id)
    synthetic = record.results.get(result_id=old_synthetic.result_id)
    real = record.results.get(result_id=old_real.result_id)
    assert synthetic is not None and synthetic.model.synthetic is True
    assert real is not None and real.model.synthetic is False
