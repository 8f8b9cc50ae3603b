"""FHIR Patient search of a DICOM PN with its ``=`` groups (alphabetic, ideographic, phonetic: PS3.5
6.2.1.2), as a Japanese or Korean modality sends it: each group is the same person's name, and a search
in any of the three scripts finds the patient. Before, only the first group was kept for searching, so a
clerk typing the name in kanji or kana found nobody. Synthetic names only."""

from __future__ import annotations

from typing import Any

from _record_data import patient, triage

from inference.record import Record

BASE = "http://testserver/fhir"


def _ids(record: Record, **params: str) -> set[str]:
    bundle: dict[str, Any] = record.fhir.search(resource_type="Patient", params=params, base_url=BASE)
    return {entry["resource"]["identifier"][0]["value"] for entry in bundle.get("entry", [])}


def test_every_group_of_a_person_name_is_searched(record: Record) -> None:
    people = [
        ("G-1", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        ("G-2", "Hong^Gildong=洪^吉洞=홍^길동"),
        ("G-3", "=山本^花子"),  # no alphabetic group
    ]
    for identifier, name in people:
        record.results.save_triage(data=triage(pat=patient(identifier, name=name)))
    assert _ids(record, family="yamada") == {"G-1"}  # the first group, as before
    assert _ids(record, family="山田") == {"G-1"} == _ids(record, given="太郎")
    assert _ids(record, name="やまだ") == {"G-1"} == _ids(record, family="やまだ")
    assert _ids(record, family="홍") == {"G-2"} == _ids(record, given="길동")
    assert _ids(record, family="洪", given="吉洞") == {"G-2"}
    assert _ids(record, family="山本") == {"G-3"}
    assert _ids(record, family="太郎") == set()  # a given name is not a family name in any group
