"""The readers' page's worklist: its filters (priority, AI status) chosen in the query on each backend, the
same results the page's own AI status names, and the read audited for the items listed only."""

from __future__ import annotations

from dataclasses import replace

import pytest
from _record_data import imaging, patient, triage
from sqlalchemy.orm import Session

from inference.record import Record, RecordError, Scope
from inference.record._inputs import AuditIn
from inference.record._models import Result
from inference.record._scope import OWN

READER = Scope(subject="web:dr-page", facility="north", grounds=frozenset({OWN}))
AUDIT = AuditIn(subject="web:dr-page", role="radiologist", facility="north", action="worklist:read")


def _page(record: Record, *, limit: int = 50, **filters: str) -> tuple[list[str], bool]:
    items, more = record.results.read_worklist_page(
        scope=READER, audit=AUDIT, limit=limit, facility="north", **filters
    )
    return [item.result_id for item in items], more


def test_the_page_s_filters_choose_in_the_query_as_the_page_names_ai_status(record: Record) -> None:
    north = patient("IPP-PAGE-1", facility="north")
    save, score = record.results.save_imaging, record.results.save_triage
    refused = save(data=replace(imaging(pat=north, priority="routine"), assessable=False)).result_id
    analysed = save(data=imaging(pat=north, priority="urgent")).result_id
    scored = score(data=triage(pat=north, priority="critical")).result_id
    older = save(data=imaging(pat=north, priority="routine")).result_id
    # A result filed before the OOD guard existed has no "assessable" entry: it counts as assessable.
    with Session(record.engine) as session, session.begin():
        row = session.get(Result, older)
        assert row is not None
        row.payload = {k: v for k, v in row.payload.items() if k != "assessable"}

    assert _page(record) == ([scored, analysed, refused, older], False)
    assert _page(record, ai_status="not_assessable") == ([refused], False)
    assert _page(record, ai_status="analysed") == ([scored, analysed, older], False)
    assert _page(record, ai_status="failed") == ([], False)  # an open result has not failed
    assert _page(record, priority="routine") == ([refused, older], False)
    assert _page(record, priority="routine", ai_status="analysed") == ([older], False)
    assert _page(record, ai_status="analysed", limit=2) == ([scored, analysed], True)


def test_the_page_s_read_is_audited_for_the_items_listed_only(record: Record) -> None:
    first = record.results.save_triage(data=triage(pat=patient("IPP-PAGE-A", facility="north")))
    second = record.results.save_triage(data=triage(pat=patient("IPP-PAGE-B", facility="north")))
    assert _page(record, limit=1) == ([first.result_id], True)
    _total, entries = record.audit.search(agent="web:dr-page", limit=50)
    assert [e["patient_id"] for e in entries if e["action"] == "worklist:read"] == [first.patient_id]
    assert second.patient_id != first.patient_id


@pytest.mark.parametrize("filters", [{"priority": "stat"}, {"ai_status": "unknown"}])
def test_an_unknown_filter_value_is_refused(record: Record, filters: dict[str, str]) -> None:
    with pytest.raises(RecordError, match="filter takes one of"):
        _page(record, **filters)
