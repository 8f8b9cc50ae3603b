"""The shared record's custody rules on both backends: identity, demographics, resends, scope, audit.

Each test reproduces one way a facility could take over or learn about another facility's patients
(issue 8) and shows the record refusing it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from _record_data import imaging, patient, triage
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from inference.record import AuditIn, HeadAnchor, Record, RecordError, ResendConflict, Scope
from inference.record._models import AuditEvent, BreakGlass, Patient
from inference.record._types import utcnow

FILER = AuditIn(
    subject="pacs-north", role="pacs", facility="north", action="studies:submit", client="10.0.0.1"
)


def _scope(facility: str | None, *grounds: str, subject: str = "reader") -> Scope:
    return Scope(subject=subject, facility=facility, grounds=frozenset(grounds))


def _patient_row(record: Record, patient_id: str) -> Patient:
    with record.sessions() as session:
        row = session.get(Patient, patient_id)
        assert row is not None
        return row


def _digested(data, digest: str):  # type: ignore[no-untyped-def]
    return replace(data, instances=tuple(replace(i, pixel_digest=digest) for i in data.instances))


def test_issuer_spellings_are_one_patient_and_one_consent(record: Record) -> None:
    first = record.results.save_triage(data=triage(pat=patient("IPP-I", issuer="chu-nord ")))
    second = record.results.save_triage(data=triage(pat=patient("IPP-I", issuer="CHU-Nord")))
    assert first.patient_id == second.patient_id
    assert _patient_row(record, first.patient_id).issuer == "CHU-NORD"
    record.consent.set(
        patient_id=first.patient_id, ai_processing=False, national_sharing=True, by="dr", role="clinician"
    )
    for spelling in ("CHU-NORD", "chu-nord", "  Chu-Nord  "):
        found = record.consent.for_identifier(identifier="IPP-I", issuer=spelling)
        assert found is not None and found.ai_processing is False
    assert record.patients.find(identifier="IPP-I", issuer="chu-NORD") == first.patient_id


def test_demographics_are_never_overwritten_and_a_mismatch_is_recorded_without_values(record: Record) -> None:
    north = record.results.save_triage(data=triage(pat=patient("IPP-T", sex=None)))
    other = patient("IPP-T", name="Mallory Impostor", birth_date="1999-09-09", sex="male", facility="south")
    taken = record.results.save_triage(data=triage(pat=other))
    assert taken.patient_id == north.patient_id
    # Sex was not on file: no mismatch, and not filled in either (only the patient's first facility
    # completes the patient; another facility filing a result never changes who the patient is).
    assert taken.mismatched == ("name", "birth_date")
    row = _patient_row(record, north.patient_id)
    assert (row.name, row.birth_date, row.sex, row.facility) == (
        "Zelda Quixote-Synthetic",
        "1950-02-01",
        None,
        "north",
    )
    result = record.results.get(result_id=taken.result_id)
    assert result is not None
    [warning] = [w for w in result.warnings if w.startswith("identity_mismatch:")]
    assert "name, birth date" in warning and "Mallory" not in warning
    [mismatch] = record.patients.identity_mismatches(patient_id=north.patient_id)
    assert mismatch["facility"] == "south" and mismatch["fields"] == ["name", "birth_date"]
    assert mismatch["result_id"] == taken.result_id and "Mallory" not in str(mismatch)
    # The same person written another way ("DOE^JANE" / "Jane Doe") is no mismatch.
    same = record.results.save_triage(
        data=triage(pat=patient("IPP-T", name="quixote-synthetic^ZELDA", sex="MALE"))
    )
    assert same.mismatched == ()
    assert _patient_row(record, north.patient_id).sex == "MALE"  # filled in by the first facility
    # The facility that filed each result owns it; the patient stays with the facility that filed it first.
    assert record.results.patient_of(result_id=north.result_id) == (north.patient_id, "north")
    assert record.results.patient_of(result_id=taken.result_id) == (north.patient_id, "south")


def test_a_resend_is_recognised_only_from_the_same_facility_with_the_same_pixels(record: Record) -> None:
    original = _digested(imaging(), "1" * 64)
    first = record.results.save_imaging(data=original, audit=FILER)
    assert first.created
    again = record.results.save_imaging(data=original, audit=FILER)
    assert (again.result_id, again.created) == (first.result_id, False)
    forged_pixels = _digested(original, "2" * 64)
    with pytest.raises(ResendConflict, match="other pixel data") as refused:
        record.results.save_imaging(data=forged_pixels, audit=FILER)
    assert refused.value.code == "resend_conflict"
    south = replace(original, patient=patient("IPP-OTHER", facility="south"))
    with pytest.raises(ResendConflict, match="another facility"):
        record.results.save_imaging(data=south, audit=FILER)
    # Another model version with the same UIDs but other pixels is no resend either.
    newer = replace(forged_pixels, model=replace(original.model, version="4"))
    with pytest.raises(ResendConflict, match="other pixel data"):
        record.results.save_imaging(data=newer, audit=FILER)
    # Nothing of the refused sends was filed, and each accepted send has exactly one audit entry.
    total, events = record.audit.search(limit=50)
    assert total == 2
    assert sorted(e["outcome"] for e in events) == ["duplicate", "success"]
    assert {e["resource_id"] for e in events} == {first.result_id}
    with record.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM results")).scalar_one() == 1


def test_result_and_audit_entry_are_one_transaction(record: Record) -> None:
    stored = record.results.save_triage(
        data=triage(), audit=replace(FILER, action="vitals:submit", role="clinician")
    )
    _total, events = record.audit.search(limit=10)
    assert [(e["resource_id"], e["patient_id"], e["action"]) for e in events] == [
        (stored.result_id, stored.patient_id, "vitals:submit")
    ]
    # A result the database refuses leaves no audit entry either.
    broken = replace(triage(), vitals={"consciousness": "Z"})
    with pytest.raises(RecordError):
        record.results.save_triage(data=broken, audit=replace(FILER, action="vitals:submit"))
    assert record.audit.count() == 1
    assert record.audit.verify().ok


def test_fhir_scope_is_in_the_query_so_totals_and_pages_count_only_what_may_be_read(record: Record) -> None:
    own = [record.results.save_triage(data=triage(pat=patient(f"IPP-N{i}"))) for i in range(3)]
    record.results.save_triage(data=triage(pat=patient("IPP-S", facility="south")))
    north = _scope("north", "own_facility", "sharing_consent", "break_glass")
    base = "http://x/fhir"

    def search(resource_type: str, scope: Scope, **params: str) -> dict:
        return record.fhir.search(resource_type=resource_type, params=params, base_url=base, scope=scope)

    assert search("RiskAssessment", north)["total"] == 3
    assert search("Patient", north)["total"] == 3
    assert search("Patient", north, identifier="IPP-S")["total"] == 0  # no hint that IPP-S exists
    assert search("Provenance", north)["total"] == 3
    assert search("Observation", north, category="vital-signs")["total"] == 3 * 7
    first = search("RiskAssessment", north, _count="2")
    assert len(first["entry"]) == 2 and [link["relation"] for link in first["link"]] == ["self", "next"]
    last = search("RiskAssessment", north, _count="2", _offset="2")
    assert len(last["entry"]) == 1 and [link["relation"] for link in last["link"]] == ["self"]
    counted = search("RiskAssessment", north, _count="0")
    assert counted["total"] == 3 and counted["entry"] == []
    assert [link["relation"] for link in counted["link"]] == ["self"]
    # Sharing consent of one patient opens that patient's results (only) to the south.
    south = _scope("south", "own_facility", "sharing_consent", "break_glass")
    assert search("RiskAssessment", south)["total"] == 1
    record.consent.set(
        patient_id=own[0].patient_id,
        ai_processing=True,
        national_sharing=True,
        facility_sharing=True,
        by="dr",
        role="clinician",
    )
    assert search("RiskAssessment", south)["total"] == 2
    assert search("Patient", south)["total"] == 2
    # A pacs scope (own facility only) ignores the consent; a scope with no ground reads nothing.
    assert search("RiskAssessment", _scope("south", "own_facility"))["total"] == 1
    assert search("RiskAssessment", _scope("north"))["total"] == 0
    assert search("Device", _scope("north"))["total"] == 1  # about no patient


def test_break_the_glass_is_personal_time_limited_and_listed(record: Record) -> None:
    stored = record.results.save_triage(data=triage(pat=patient("IPP-B")))
    reader = _scope("south", "own_facility", "sharing_consent", "break_glass", subject="dr-south")
    owner = None
    assert record.patients.access_basis(scope=reader, patient_id=stored.patient_id, owner="north") is None
    opener = AuditIn(subject="dr-south", role="clinician", facility="south", action="break-glass:open")
    grant = record.break_glass.open(
        patient_id=stored.patient_id, reason="Unconscious in our ER, no history", minutes=30, audit=opener
    )
    assert (
        record.patients.access_basis(scope=reader, patient_id=stored.patient_id, owner="north")
        == "break_glass"
    )
    colleague = replace(reader, subject="dr-other")
    assert record.patients.access_basis(scope=colleague, patient_id=stored.patient_id, owner=owner) is None
    total, listed = record.break_glass.grants(facility="north")  # the holder's auditor sees it
    assert total == 1 and listed[0]["grant_id"] == grant["grant_id"] and listed[0]["active"]
    assert record.break_glass.grants(facility="east")[0] == 0
    _total, events = record.audit.search(agent="dr-south")
    assert [(e["action"], e["outcome"], e["patient_id"]) for e in events] == [
        ("break-glass:open", "break_glass", stored.patient_id)
    ]
    with record.sessions() as session, session.begin():
        row = session.get(BreakGlass, grant["grant_id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    assert record.patients.access_basis(scope=reader, patient_id=stored.patient_id, owner="north") is None
    assert record.break_glass.grants(facility=None, active_only=True)[0] == 0
    for reason, minutes in (("short", 30), ("A long enough reason", 0), ("A long enough reason", 1441)):
        with pytest.raises(Exception, match="break-the-glass"):
            record.break_glass.open(
                patient_id=stored.patient_id, reason=reason, minutes=minutes, audit=opener
            )


def test_an_upsert_cannot_rewrite_the_audit_trail(record: Record) -> None:
    for n in range(3):
        record.audit.append(
            subject=f"s{n}",
            role="clinician",
            facility="north",
            action="results:read",
            resource_type=None,
            resource_id=None,
            patient_id=None,
            outcome="success",
            client=None,
        )
    copy = (
        "SELECT id, time, 'forger', role, action, outcome, seq, prev_hash, hash "
        "FROM audit_events WHERE seq = 2"
    )
    columns = "(id, time, subject, role, action, outcome, seq, prev_hash, hash)"
    if record.engine.dialect.name == "sqlite":
        # REPLACE deletes the old row without firing DELETE triggers: the INSERT itself must be refused.
        statements = [
            f"INSERT OR REPLACE INTO audit_events {columns} {copy}",
            "INSERT OR REPLACE INTO audit_chain_head (id, seq, hash) VALUES (1, 1, 'x')",
        ]
    else:
        statements = [
            f"INSERT INTO audit_events {columns} {copy} ON CONFLICT (id) DO UPDATE SET subject = 'forger'",
            "INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 1, 'x') "
            "ON CONFLICT (id) DO UPDATE SET seq = 1, hash = 'x'",
        ]
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only|only moves forward"):
            with record.engine.begin() as connection:
                connection.execute(text(statement))
    assert record.audit.verify().ok
    _total, events = record.audit.search(limit=10)
    assert "forger" not in {e["subject"] for e in events}


def test_the_head_anchor_catches_a_forged_or_deleted_anchor_and_a_cut_tail(record: Record, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = record.engine.url.render_as_string(hide_password=False)
    anchored = Record(url, anchor=HeadAnchor(tmp_path))
    try:
        for n in range(4):
            anchored.results.save_triage(
                data=triage(pat=patient(f"IPP-A{n}")), audit=replace(FILER, action="vitals:submit")
            )
        report = anchored.audit.verify()
        assert report.ok and report.anchored_seq == 4
        anchor_file = tmp_path / "audit" / "head.json"
        good = anchor_file.read_text()
        # The anchor cannot be moved by hand: its signature no longer matches.
        anchor_file.write_text(good.replace('"seq": 4', '"seq": 3'))
        assert any("signature" in p.reason for p in anchored.audit.verify().problems)
        anchor_file.unlink()
        assert any("missing" in p.reason for p in anchored.audit.verify().problems)
        anchor_file.write_text(good)
        # An anchor ahead of the chain (its tail cut) fails; one behind it (a crash before the write) holds.
        HeadAnchor(tmp_path).advance(9, "f" * 64)
        assert any("tail was removed" in p.reason for p in anchored.audit.verify().problems)
        anchor_file.write_text(good)
        anchored.results.save_triage(
            data=triage(pat=patient("IPP-A9")), audit=replace(FILER, action="vitals:submit")
        )
        anchor_file.write_text(good)
        assert anchored.audit.verify().ok
    finally:
        anchored.close()


@pytest.mark.parametrize("change", ["rechain", "cut"])
def test_an_audited_access_after_the_trail_was_changed_does_not_anchor_the_change(
    change: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Someone with database rights re-chains the trail (every hash recomputed) or cuts its tail. The next
    # audited accesses used to anchor whatever head the database then had, signed by the server itself:
    # one access later `audit verify` passed and the change was hidden. The anchor is now kept, and the
    # server says so (critical), until an operator who has looked removes it.
    from _audit_tamper import cut_tail, rechain

    db = tmp_path / "record.db"
    anchored = Record(f"sqlite:///{db}", anchor=HeadAnchor(tmp_path / "home"))
    anchored.migrate()

    def access(n: int) -> None:
        anchored.results.save_triage(
            data=triage(pat=patient(f"IPP-T{n}")), audit=replace(FILER, action="vitals:submit")
        )

    try:
        for n in range(5):
            access(n)
        assert anchored.audit.verify().anchored_seq == 5
        if change == "rechain":
            rechain(db, "UPDATE audit_events SET subject = 'someone-else' WHERE seq = 3")
            caught = "re-chained"
        else:
            cut_tail(db, 2)
            caught = "tail was removed"
        assert any(caught in p.reason for p in anchored.audit.verify().problems)
        # Accesses go on (past the anchored entry, for the cut trail), each filed and audited.
        for n in range(5, 9):
            access(n)
        report = anchored.audit.verify()
        assert report.anchored_seq == 5 and not report.ok
        assert any(
            p.reason.startswith(("The entry at the anchored head", "The trail ends")) for p in report.problems
        )
        critical = [getattr(r, "code", None) for r in caplog.records if r.levelname == "CRITICAL"]
        assert critical[-1] == "audit_anchor_mismatch"
        # An operator who has looked (and restored the trail, or accepts it) removes the anchor: the
        # next access anchors the head again.
        (tmp_path / "home" / "audit" / "head.json").unlink()
        access(9)
        assert anchored.audit.verify().ok
    finally:
        anchored.close()


def test_the_anchor_moves_when_another_writer_appended_in_between(tmp_path: Path) -> None:
    # Two processes (or hosts) file into one record: an entry chains onto one the anchor does not name
    # yet; the record holds the anchored entry, so the anchor moves on (and verify passes).
    url = f"sqlite:///{tmp_path / 'record.db'}"
    first = Record(url, anchor=HeadAnchor(tmp_path / "home"))
    first.migrate()
    other = Record(url)  # appends without anchoring (another host's own home)
    try:
        for n, record in enumerate((first, other, other, first)):
            record.results.save_triage(
                data=triage(pat=patient(f"IPP-M{n}")), audit=replace(FILER, action="vitals:submit")
            )
        report = first.audit.verify()
        assert report.ok and report.anchored_seq == report.head_seq == 4
    finally:
        first.close()
        other.close()


def test_verify_on_a_record_that_is_filing_meanwhile_reports_no_cut_tail(
    record: Record, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `dxassist audit verify` run beside a live server: entries are committed and anchored while the
    # chain is walked. The anchor read after the walk named an entry the walk's snapshot did not hold,
    # which read as a cut tail (a false tamper alarm); the anchor is read before the walk.
    from concurrent.futures import ThreadPoolExecutor

    from inference.record import _audit

    url = record.engine.url.render_as_string(hide_password=False)
    anchored = Record(url, anchor=HeadAnchor(tmp_path))
    walk = _audit.verify
    numbers = itertools.count()

    def file_one() -> None:
        anchored.results.save_triage(
            data=triage(pat=patient(f"IPP-W{next(numbers)}")), audit=replace(FILER, action="vitals:submit")
        )

    def walk_while_filing(session: Session) -> _audit.AuditReport:
        report = walk(session)
        # The server files another result (its own connection) once the walk has read the chain.
        with ThreadPoolExecutor(max_workers=1) as other:
            other.submit(file_one).result()
        return report

    try:
        for _ in range(3):
            file_one()
        monkeypatch.setattr(_audit, "verify", walk_while_filing)
        report = anchored.audit.verify()
        assert report.ok, [p.reason for p in report.problems]
        assert report.anchored_seq == report.head_seq == 3
        monkeypatch.setattr(_audit, "verify", walk)
        # The next walk sees the entry filed during the first, and it is anchored.
        report = anchored.audit.verify()
        assert report.ok and report.anchored_seq == report.head_seq == 4
        # A cut tail is still caught: the anchor (read first) names an entry past the chain's end.
        HeadAnchor(tmp_path).advance(9, "f" * 64)
        assert any("tail was removed" in p.reason for p in anchored.audit.verify().problems)
    finally:
        anchored.close()


def test_the_walk_of_verify_sees_one_snapshot_while_entries_are_filed(
    record: Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The walk reads the chain head, then the entries. On PostgreSQL (READ COMMITTED) an entry committed
    # between the two was walked past the head just read: "The chain head does not point at the newest
    # entry (it was changed by hand)", a false alarm beside a live server.
    from concurrent.futures import ThreadPoolExecutor

    from inference.record import _audit

    def file_one(n: int) -> None:
        record.results.save_triage(
            data=triage(pat=patient(f"IPP-S{n}")), audit=replace(FILER, action="vitals:submit")
        )

    for n in range(3):
        file_one(n)
    rows = _audit._rows

    def rows_after_a_filing(session: Session) -> Iterator[AuditEvent]:
        with ThreadPoolExecutor(max_workers=1) as other:  # its own connection, committed
            other.submit(file_one, 3).result()
        return rows(session)

    monkeypatch.setattr(_audit, "_rows", rows_after_a_filing)
    report = record.audit.verify()
    assert report.ok, [p.reason for p in report.problems]
    assert report.head_seq == report.entries == 3
    monkeypatch.setattr(_audit, "_rows", rows)
    assert record.audit.verify().entries == 4


def test_a_damaged_anchor_key_is_reported_and_never_signs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A key file cut short (a power loss as it was created, before it was fsynced; a bad restore) would
    # sign anchors with a guessable secret. It is refused: verify names it, filing goes on (the anchor
    # stays where it was; the server logs that it could not be written).
    from inference.record import _anchor

    url = f"sqlite:///{tmp_path / 'record.db'}"
    home = tmp_path / "home"
    anchored = Record(url, anchor=HeadAnchor(home))
    anchored.migrate()
    try:
        anchored.results.save_triage(
            data=triage(pat=patient("IPP-K0")), audit=replace(FILER, action="vitals:submit")
        )
        assert anchored.audit.verify().ok
        key = home / _anchor.KEY_FILE
        assert len(key.read_bytes()) == 32 and key.stat().st_mode & 0o777 == 0o600
        key.write_bytes(b"")
    finally:
        anchored.close()
    again = Record(url, anchor=HeadAnchor(home))  # a process started after the damage
    try:
        stored = again.results.save_triage(
            data=triage(pat=patient("IPP-K1")), audit=replace(FILER, action="vitals:submit")
        )
        assert stored.created
        assert again.anchor is not None and again.anchor.flush()  # its thread tried to anchor it
        assert "anchor_write_failed" in [getattr(r, "code", None) for r in caplog.records]
        report = again.audit.verify()
        assert any("key" in p.reason and "damaged" in p.reason for p in report.problems), report.problems
        assert (home / _anchor.ANCHOR_FILE).read_text().count('"seq": 1') == 1  # not moved, not re-signed
    finally:
        again.close()


def test_the_anchor_is_on_disk_before_it_replaces_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A filesystem may keep a rename but not the renamed file's data after a power loss (XFS does): the
    # anchor would then be empty, which `audit verify` reports as unreadable. The new anchor's bytes are
    # fsynced before it is renamed into place.
    import os

    from inference.record import _anchor

    steps: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        steps.append(("replace", str(src)))
        real_replace(src, dst)

    monkeypatch.setattr(_anchor.os, "fsync", fsync)
    monkeypatch.setattr(_anchor.os, "replace", replace_file)
    anchor = HeadAnchor(tmp_path)
    anchor.advance(3, "a" * 64)
    anchor.advance(4, "b" * 64)
    renamed = [path for step, path in steps if step == "replace"]
    assert len(renamed) == 2
    for path in renamed:
        assert steps.index(("fsync", path)) < steps.index(("replace", path))
    assert anchor.read() == _anchor.AnchoredHead(seq=4, hash="b" * 64)
