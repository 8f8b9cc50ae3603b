"""Filing results: migrations, idempotency, one transaction per result, public JSON, both backends."""

from __future__ import annotations

import json
import threading
from dataclasses import FrozenInstanceError, replace
from datetime import UTC, datetime, timedelta

import pytest
from _record_data import CXR_MODEL, SECRET_BIRTH, SECRET_NAME, imaging, patient, png_bytes, triage, uid
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from inference.api._public import public_result
from inference.record import (
    Conflict,
    FindingResult,
    ImagingResult,
    ModelInfo,
    PatientRef,
    Record,
    RecordError,
    Risk,
    TriageResult,
)
from inference.record._engine import make_engine


def _count(record: Record, table: str) -> int:
    with record.engine.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def _head() -> str:
    """The newest revision of the migration scripts (there is exactly one head)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from inference.record._engine import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    (head,) = ScriptDirectory.from_config(config).get_heads()
    return str(head)


def test_migrations_create_the_schema_and_rerun_as_no_op(record_url: str) -> None:
    record = Record(record_url)
    record.migrate()
    tables = set(inspect(record.engine).get_table_names())
    expected = {
        "patients", "studies", "instances", "vitals_observations", "results", "findings",
        "heatmaps", "feedback", "devices", "audit_events", "alembic_version",
        "audit_chain_head", "consents", "user_accounts", "web_sessions", "renderings", "outbox",
        "output_builds",
    }  # fmt: skip
    assert expected <= tables
    record.migrate()  # a second start of the server
    with record.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == _head()
    assert record.ping()
    record.close()


def test_ping_is_false_when_the_database_is_gone(tmp_path) -> None:
    rec = Record("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        assert rec.ping() is False
    finally:
        rec.close()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path) -> None:
    rec = Record(f"sqlite:///{tmp_path / 'sub' / 'record.db'}")
    rec.migrate()
    with rec.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
    rec.close()


def test_sqlite_commits_are_durable_before_they_return(tmp_path) -> None:
    # synchronous=FULL (2): each commit fsyncs the write-ahead log. NORMAL (1) could lose the last
    # answered commits on a power loss: a stored study whose spool copy is gone, or audit entries the
    # anchor file already names (a false "trail cut" from `audit verify`).
    rec = Record(f"sqlite:///{tmp_path / 'record.db'}")  # the server's record: checkpoints on a thread
    rec.migrate()
    plain = make_engine(f"sqlite:///{tmp_path / 'other.db'}")  # commits checkpoint themselves
    try:
        for engine in (rec.engine, plain):
            with engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2
    finally:
        plain.dispose()
        rec.close()


def test_same_instances_and_model_version_return_the_existing_result(record: Record) -> None:
    data = imaging()
    first = record.results.save_imaging(data=data)
    # The PACS re-sends the study with its instances in another order.
    again = record.results.save_imaging(data=replace(data, instances=tuple(reversed(data.instances))))
    assert first.created and not again.created
    assert again.result_id == first.result_id and again.patient_id == first.patient_id
    assert _count(record, "results") == 1
    assert _count(record, "instances") == 2

    newer = record.results.save_imaging(data=replace(data, model=replace(CXR_MODEL, version="4")))
    assert newer.created and newer.result_id != first.result_id
    latest = record.results.latest_for_study(study_instance_uid=data.study_instance_uid)
    assert latest is not None and latest.model.version == "4"
    assert _count(record, "devices") == 2


def test_concurrent_duplicates_file_one_result(record: Record) -> None:
    data = imaging(pat=patient("IPP-RACE"))
    barrier = threading.Barrier(4)
    outcomes: list[object] = []

    def submit() -> None:
        barrier.wait()
        try:
            outcomes.append(record.results.save_imaging(data=data))
        except Exception as e:  # noqa: BLE001 - the assertion below reports it
            outcomes.append(e)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    assert sum(o.created for o in outcomes) == 1  # type: ignore[attr-defined]
    assert len({o.result_id for o in outcomes}) == 1  # type: ignore[attr-defined]
    assert _count(record, "results") == 1 and _count(record, "patients") == 1


def test_a_failure_inside_the_transaction_leaves_nothing(record: Record) -> None:
    data = imaging(pat=patient("IPP-ATOMIC"), heatmap=b"GIF89a not a png at all")
    with pytest.raises(RecordError, match="nothing was saved"):
        record.results.save_imaging(data=data)
    for table in ("patients", "studies", "instances", "results", "findings", "heatmaps", "devices"):
        assert _count(record, table) == 0, table
    assert record.results.latest_for_study(study_instance_uid=data.study_instance_uid) is None
    # The same study with a valid heatmap then files normally.
    assert record.results.save_imaging(data=replace(data, findings=imaging().findings)).created


def test_refuses_malformed_results_with_clear_messages(record: Record) -> None:
    with pytest.raises(RecordError, match="Priority 'soon' is not accepted"):
        record.results.save_imaging(data=imaging(priority="soon"))
    bad = replace(imaging(), findings=(replace(imaging().findings[0], probability=float("nan")),))
    with pytest.raises(RecordError, match="between 0 and 1"):
        record.results.save_imaging(data=bad)
    with pytest.raises(RecordError, match="patient identifier is longer than the 128") as caught:
        record.results.save_triage(data=triage(pat=patient("X" * 200)))
    assert "XXXX" not in str(caught.value)
    with pytest.raises(RecordError, match="accepted fields are"):
        record.results.save_triage(data=replace(triage(), vitals={"pulse": 80.0}))
    assert _count(record, "results") == 0


def test_a_study_belongs_to_one_patient(record: Record) -> None:
    data = imaging(pat=patient("IPP-1"))
    record.results.save_imaging(data=data)
    other = replace(data, patient=patient("IPP-2"), instances=imaging().instances)
    other = replace(other, primary_sop_instance_uid=other.instances[0].sop_instance_uid)
    with pytest.raises(Conflict, match="another patient") as caught:
        record.results.save_imaging(data=other)
    assert "IPP-2" not in str(caught.value) and SECRET_NAME not in str(caught.value)
    assert _count(record, "patients") == 1


def test_patient_is_one_per_identifier_and_issuer(record: Record) -> None:
    first = record.results.save_imaging(data=imaging(pat=patient("IPP-7", name=None, birth_date=None)))
    second = record.results.save_triage(data=triage(pat=patient("IPP-7")))
    elsewhere = record.results.save_triage(data=triage(pat=patient("IPP-7", issuer="CHU-SUD")))
    no_issuer = record.results.save_triage(data=triage(pat=patient("IPP-7", issuer=None)))
    no_issuer_again = record.results.save_triage(data=triage(pat=patient("IPP-7", issuer=None)))
    assert first.patient_id == second.patient_id
    assert len({first.patient_id, elsewhere.patient_id, no_issuer.patient_id}) == 3
    assert no_issuer_again.patient_id == no_issuer.patient_id
    # Demographics sent later complete the patient (visible on the authorised FHIR channel).
    fhir = record.fhir.read(resource_type="Patient", resource_id=first.patient_id)
    assert fhir is not None and fhir["name"] == [{"text": SECRET_NAME}] and fhir["birthDate"] == SECRET_BIRTH


def test_imaging_result_is_typed_complete_and_its_json_public(record: Record) -> None:
    data = imaging()
    stored = record.results.save_imaging(data=data)
    result = record.results.get(result_id=stored.result_id)
    assert isinstance(result, ImagingResult) and stored.result == result  # read back in the filing
    with pytest.raises(FrozenInstanceError):
        result.priority = "routine"  # type: ignore[misc]
    public = public_result(result, language="fr").model_dump(mode="json")
    dumped = json.dumps(public, ensure_ascii=False)
    assert SECRET_NAME not in dumped and SECRET_BIRTH not in dumped and "birth" not in dumped
    assert result.kind == "imaging" and result.status == "open" and result.priority == "urgent"
    assert result.patient == PatientRef(id=stored.patient_id, identifier="IPP-000123")
    assert result.model == ModelInfo(name="cxr-findings", version="3", sha256="a" * 64)
    assert result.study_instance_uid == data.study_instance_uid
    assert result.warnings == data.warnings
    assert result.rationale["fr"].startswith("Épanchement") and public["rationale"] == result.rationale["fr"]
    effusion, pneumothorax = result.findings
    assert effusion == FindingResult(
        code="pleural_effusion",
        display="Pleural effusion",
        probability=0.91,
        positive=True,
        threshold=0.5,
        box=(10, 20, 40, 60),
        heatmap=True,
    )
    assert public["findings"][0] == {
        "code": "pleural_effusion",
        "display": "Pleural effusion",
        "probability": 0.91,
        "positive": True,
        "threshold": 0.5,
        "box": [10, 20, 40, 60],
        "heatmap": f"/v1/results/{stored.result_id}/heatmaps/pleural_effusion.png",
    }
    assert not pneumothorax.heatmap and pneumothorax.box is None
    assert public["findings"][1]["heatmap"] is None
    created = datetime.fromisoformat(public["created_at"])
    assert created == result.created_at.replace(microsecond=result.created_at.microsecond // 1000 * 1000)
    assert created.tzinfo is not None and abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    assert record.results.heatmap(result_id=stored.result_id, code="pleural_effusion") == png_bytes()
    assert record.results.heatmap(result_id=stored.result_id, code="pneumothorax") is None
    assert record.results.get(result_id="no-such-result") is None


def test_triage_result_typed_and_json(record: Record) -> None:
    stored = record.results.save_triage(data=triage())
    result = record.results.get(result_id=stored.result_id)
    assert isinstance(result, TriageResult) and stored.result == result
    public = public_result(result, language="en").model_dump(mode="json")
    assert SECRET_NAME not in json.dumps(public) and SECRET_BIRTH not in json.dumps(public)
    assert result.kind == "triage" and result.priority == "critical"
    assert public["observed_at"] == "2026-11-22T08:15:00.000Z"
    assert result.risk == Risk(probability=0.73, positive=True, threshold=0.3)
    assert public["risk"] == {"probability": 0.73, "positive": True, "threshold": 0.3}
    assert result.contributions["heart_rate"] == pytest.approx(1.69)
    assert result.intercept == -2.0 and result.logit == pytest.approx(0.99)
    assert result.news2 is not None and result.news2["band"] == "high"
    assert public["news2"]["subscores"]["spo2"] == 2
    missing = record.results.save_triage(data=triage(news2=False))
    again = record.results.get(result_id=missing.result_id)
    assert isinstance(again, TriageResult) and again.news2 is None


def test_study_priority_follows_the_newest_result(record: Record) -> None:
    study = uid()
    assert record.results.study_priority(study_instance_uid=study) is None
    assert record.results.latest_for_study(study_instance_uid=study) is None
    data = imaging(study_uid=study, priority="routine")
    record.results.save_imaging(data=data)
    assert record.results.study_priority(study_instance_uid=study) == "routine"
    record.results.save_imaging(
        data=replace(data, model=replace(CXR_MODEL, version="9"), priority="critical")
    )
    assert record.results.study_priority(study_instance_uid=study) == "critical"


def test_audit_trail_is_append_only(record: Record) -> None:
    record.audit.append(
        subject="dr-house",
        role="radiologist",
        facility="north",
        action="read",
        resource_type="Result",
        resource_id="r-1",
        patient_id="p-1",
        outcome="success",
        client="127.0.0.1",
    )
    events = record.audit.events(patient_id="p-1")
    assert len(events) == 1 and events[0]["action"] == "read" and events[0]["time"].endswith("Z")
    for statement in ("UPDATE audit_events SET outcome = 'denied'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), record.engine.begin() as connection:
            connection.execute(text(statement))
    assert record.audit.count() == 1
    assert record.audit.events()[0]["outcome"] == "success"
