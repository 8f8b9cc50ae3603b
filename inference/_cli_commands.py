"""The bodies of ``dxassist audit verify``, ``dxassist export-training-set`` and ``dxassist export verify``
(the CLI only parses flags).

Both print a short report for the operator (never a patient's name, identifier or birth date) and return
the process exit code.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import hmac
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from inference.config import Settings
    from inference.record import AuditIn, FeedbackVerdict, Record

LABELS_FILE = "labels.csv"
MANIFEST_FILE = "manifest.json"
LABEL_COLUMNS = (
    "patient_pseudonym",
    "study_instance_uid",
    "result_ref",
    "finding",
    "model_name",
    "model_version",
    "probability",
    "model_positive",
    "verdict",
    "label",
)


def audit_verify(settings: Settings, *, stream: TextIO | None = None) -> int:
    """Check the audit trail's hash chain from the first entry to the head.

    Prints ``audit trail intact`` with the entry count and the head hash (keep it somewhere else to
    detect a rewritten trail later), or one line per entry that was edited, deleted or inserted.

    Returns:
        0 when the chain is intact, 1 when it is not.
    """
    from inference.record import HeadAnchor, Record

    out = stream if stream is not None else sys.stdout
    record = Record(settings.record_url, anchor=HeadAnchor(settings.resolved_home))
    try:
        record.migrate()
        report = record.audit.verify()
    finally:
        record.close()
    if report.ok:
        anchored = (
            f", anchored at seq {report.anchored_seq}"
            if report.anchored_seq is not None
            else ", not anchored yet"
        )
        out.write(
            f"audit trail intact: {report.entries} entries, head seq {report.head_seq}, "
            f"head sha256 {report.head_hash}{anchored}\n"
        )
        return 0
    out.write(f"audit trail BROKEN: {len(report.problems)} problem(s) in {report.entries} entries\n")
    for problem in report.problems:
        where = f"entry seq {problem.seq}" if problem.seq is not None else "entry without seq"
        row = f" (row id {problem.row_id})" if problem.row_id is not None else ""
        out.write(f"  {where}{row}: {problem.reason}\n")
    return 1


@dataclass
class ExportSummary:
    """What an export wrote and left out (counts only)."""

    instances: int = 0
    patients: set[str] = field(default_factory=set)
    studies: set[str] = field(default_factory=set)
    labels: int = 0
    skipped_consent: int = 0
    skipped_unreadable: int = 0
    skipped_burned_in: int = 0


def _dicom_files(source: Path) -> Iterator[Path]:
    for path in sorted(source.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            yield path


def _label(verdict: FeedbackVerdict, positive: bool) -> str:
    if verdict.verdict == "correct":
        return "1" if verdict.correct_label else "0"
    agreed = verdict.verdict == "agree"
    return "1" if positive == agreed else "0"


def _label_rows(
    record: Record, study_uid: str, pseudonym: str, new_study_uid: str, secret: bytes
) -> list[dict[str, str]]:
    from inference.record import AuditIn, ImagingResult
    from inference.security import Principal, scope_for

    # The study's newest result and its readers' feedback are health data: read in one transaction with
    # their audit entry (``results:read`` by the administrator at this terminal, on the result and its
    # patient, under the export's request id).
    subject = f"cli:{getpass.getuser()}"
    found = record.results.read_latest_with_feedback(
        study_instance_uid=study_uid,
        scope=scope_for(Principal(subject=subject, role="admin")),
        audit=AuditIn(subject=subject, role="admin", facility=None, action="results:read"),
    )
    if found.value is None:
        return []
    result, feedback_entries = found.value
    if not isinstance(result, ImagingResult):
        return []
    findings = {f.code: f for f in result.findings}
    # The result id would link the export back to the identified record: a keyed digest replaces it.
    ref = hmac.new(secret, f"result\x00{result.result_id}".encode(), hashlib.sha256).hexdigest()[:20]
    rows = []
    for feedback in feedback_entries:
        for verdict in feedback.verdicts:
            finding = findings.get(verdict.code)
            if finding is None:
                continue
            rows.append(
                {
                    "patient_pseudonym": pseudonym,
                    "study_instance_uid": new_study_uid,
                    "result_ref": ref,
                    "finding": verdict.code,
                    "model_name": feedback.model.name,
                    "model_version": feedback.model.version,
                    "probability": f"{finding.probability:.6f}",
                    "model_positive": "1" if finding.positive else "0",
                    "verdict": verdict.verdict,
                    "label": _label(verdict, finding.positive),
                }
            )
    return rows


def _cli_audit(action: str) -> AuditIn:
    """Who does ``action``: the administrator at this terminal."""
    from inference.record import AuditIn

    return AuditIn(subject=f"cli:{getpass.getuser()}", role="admin", facility=None, action=action)


def _consent_of(record: Record, identifier: str, issuer: str | None) -> tuple[bool, str | None]:
    """Whether the patient ``(identifier, issuer)`` allows AI processing (False when it objected, or its
    consent could not be served), and its id in the record (None: unknown to it). Read in one
    transaction with its audit entry (``consent:read`` by the administrator at this terminal, on the
    patient's Consent; ``not_found``, naming nobody, for a patient the record does not know, who
    objected to nothing)."""
    from inference.security import Principal, scope_for

    audit = _cli_audit("consent:read")
    found = record.consent.read_by_identifier(
        identifier=identifier,
        issuer=issuer,
        scope=scope_for(Principal(subject=audit.subject, role="admin")),
        audit=audit,
    )
    if found.value is None:
        return found.outcome == "not_found", found.patient_id
    return found.value.ai_processing, found.patient_id


def export_kept_training_set(
    settings: Settings, *, out: Path, model: str = "cxr-findings", stream: TextIO | None = None
) -> int:
    """Write the labelled model inputs the server kept (``dxassist-export`` format) to ``out``, audited.

    A folder holding only the unfinished export of a run that was stopped (its ``.partial``, never audited
    nor published, possibly the inputs of a patient who objected since) has that removed first.

    Returns:
        0 on success; 2 when ``out`` exists and is not empty.
    """
    from inference.deid import deid_secret
    from inference.record import HeadAnchor, Record
    from inference.services._training_export import STAGING, export_kept_inputs

    report = stream if stream is not None else sys.stdout
    leftover = out / STAGING
    stopped = leftover.is_dir() and not leftover.is_symlink()
    if out.exists() and any(entry.name != STAGING or not stopped for entry in out.iterdir()):
        report.write(f"export-training-set: {out} exists and is not empty; choose a new folder.\n")
        return 2
    if stopped:
        shutil.rmtree(leftover)
        report.write(
            f"export-training-set: removed {leftover}, the unfinished export of a run that was stopped "
            "(never audited nor published).\n"
        )
    record = Record(settings.record_url, anchor=HeadAnchor(settings.resolved_home))
    try:
        record.migrate()
        # each exported patient is named on the trail (one entry each: who saw this patient's data)
        audit = _cli_audit("export:training-set")
        export_kept_inputs(
            record,
            out=out,
            secret=deid_secret(settings.keys_dir),
            audit=audit,
            model_name=model,
            report=report,
        )
    finally:
        record.close()
    return 0


def verify_export(folder: Path, *, stream: TextIO | None = None) -> int:
    """Recompute the content digest of the ``dxassist-export`` training export in ``folder`` and compare it
    with the ``content_sha256`` its manifest names.

    Returns:
        0 when they match; 1 when they do not (a file was changed, added or removed since the export); 2
        when ``folder`` holds no such export, or its manifest names no digest.
    """
    from inference.services._training_export import content_digest, recorded_digest

    report = stream if stream is not None else sys.stdout
    try:
        expected = recorded_digest(folder)
    except ValueError as e:
        report.write(f"export verify: {e}\n")
        return 2
    actual = content_digest(folder)
    if actual != expected:
        report.write(
            f"export verify: {folder} does not match its manifest: its files' content digest is "
            f"{actual[:12]}..., the manifest's content_sha256 is {expected[:12]}...; a file was changed, "
            "added or removed since the export.\n"
        )
        return 1
    report.write(f"export verify: {folder} matches its manifest (content_sha256 {expected[:12]}...).\n")
    return 0


def export_training_set(settings: Settings, *, out: Path, source: Path, stream: TextIO | None = None) -> int:
    """Write a de-identified copy of the DICOM files under ``source`` and the readers' labels to ``out``.

    ``out/dicom/<pseudonym>/<study uid>/<sop uid>.dcm`` per instance (DICOM PS3.15 Annex E Basic Profile,
    consistent UID remapping, dates shifted per patient), ``out/labels.csv`` (the readers' feedback on
    the latest result of each study, keyed by the pseudonymous patient id) and ``out/manifest.json``
    (counts and the profile applied). Patients who objected to AI processing are left out, and so are
    images declaring burned-in annotation. The export is written to the audit trail.

    Returns:
        0 on success; 2 when ``source`` is not a folder or ``out`` exists and is not empty.
    """
    from pydicom import dcmread

    from inference.deid import (
        BASIC_PROFILE,
        EDITION,
        RETAIN_LONGITUDINAL_MODIFIED_DATES,
        BurnedInAnnotation,
        Deidentifier,
        ProfileUnavailable,
        deid_secret,
        table,
    )
    from inference.record import HeadAnchor, Record
    from inference.services._training_export import audit_export

    report = stream if stream is not None else sys.stdout
    if not source.is_dir():
        report.write(f"export-training-set: the source {source} is not a folder of DICOM files.\n")
        return 2
    if out.exists() and any(out.iterdir()):
        report.write(f"export-training-set: {out} exists and is not empty; choose a new folder.\n")
        return 2
    try:
        table()  # PS3.15 Table E.1-1, before any file is read
    except ProfileUnavailable as e:
        report.write(f"export-training-set: {e}\n")
        return 2
    secret = deid_secret(settings.keys_dir)
    deid = Deidentifier(secret)
    summary = ExportSummary()
    labelled: set[str] = set()
    rows: list[dict[str, str]] = []
    consents: dict[tuple[str, str | None], tuple[bool, str | None]] = {}  # each read (and audited) once
    exported: dict[str, None] = {}  # the record's patients exported, in order
    record = Record(settings.record_url, anchor=HeadAnchor(settings.resolved_home))
    try:
        record.migrate()
        for path in _dicom_files(source):
            raw = path.read_bytes() if path.stat().st_size <= settings.limits.max_instance_bytes else b""
            try:
                ds = dcmread(BytesIO(raw))
                identifier = str(ds.PatientID)
                # as the ingest paths key the patient (services/_identity.identify): a file naming no
                # issuer means the server-wide default, so an objection recorded under it is found (the
                # record trims and upper-cases the issuer itself)
                issuer = str(ds.get("IssuerOfPatientID", "") or "").strip() or settings.record.default_issuer
                study_uid = str(ds.StudyInstanceUID)
                str(ds.SOPInstanceUID)
            except Exception:  # noqa: BLE001 - anything pydicom cannot read is skipped and counted
                summary.skipped_unreadable += 1
                continue
            if (identifier, issuer) not in consents:
                consents[identifier, issuer] = _consent_of(record, identifier, issuer)
            allowed, patient_id = consents[identifier, issuer]
            if not allowed:
                summary.skipped_consent += 1
                continue
            try:
                deid.deidentify(ds)
            except BurnedInAnnotation:
                summary.skipped_burned_in += 1
                continue
            pseudonym = str(ds.PatientID)
            target = out / "dicom" / pseudonym / str(ds.StudyInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
            target.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(target, enforce_file_format=True)
            summary.instances += 1
            if patient_id is not None:
                exported[patient_id] = None
            summary.patients.add(pseudonym)
            summary.studies.add(str(ds.StudyInstanceUID))
            if study_uid not in labelled:
                labelled.add(study_uid)
                rows += _label_rows(record, study_uid, pseudonym, str(ds.StudyInstanceUID), secret)
        out.mkdir(parents=True, exist_ok=True)
        with (out / LABELS_FILE).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=LABEL_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        summary.labels = len(rows)
        manifest = {
            "profile": [BASIC_PROFILE, RETAIN_LONGITUDINAL_MODIFIED_DATES],
            "profile_table": f"DICOM PS3.15 Table E.1-1, {EDITION}",
            "instances": summary.instances,
            "patients": len(summary.patients),
            "studies": len(summary.studies),
            "labels": summary.labels,
            "skipped": {
                "consent_objection": summary.skipped_consent,
                "unreadable": summary.skipped_unreadable,
                "burned_in_annotation": summary.skipped_burned_in,
            },
        }
        (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        audit_export(record, _cli_audit("export:training-set"), out=out, patients=list(exported))
    finally:
        record.close()
    report.write(
        f"exported {summary.instances} instance(s) of {len(summary.patients)} patient(s), "
        f"{summary.labels} label(s) to {out}; skipped {summary.skipped_consent} (consent objection), "
        f"{summary.skipped_unreadable} (unreadable), {summary.skipped_burned_in} (burned-in annotation)\n"
    )
    return 0


def _audit_account(record: Record, *, action: str, username: str) -> None:
    """The audit entry of an account change by the administrator at this terminal."""
    record.audit.append(
        subject=f"cli:{getpass.getuser()}", role="admin", facility=None, action=action,
        resource_type="Account", resource_id=username, patient_id=None, outcome="success", client=None,
    )  # fmt: skip


def user_command(
    settings: Settings, args: Any, *, stdin: TextIO | None = None, stream: TextIO | None = None
) -> int:
    """``dxassist user add|list|disable|sso-unbind``: local accounts of the web pages.

    ``add --sso-subject`` binds the account to the provider's subject up front and ``sso-unbind`` forgets
    the binding. Every change is audited under ``cli:<the terminal's user>``: ``user:add``,
    ``user:disable``, ``user:sso_bind``, ``user:sso_unbind``.

    Returns:
        0, or 1 when the account exists already or another is bound to the subject (add), or it does not
        exist (disable, sso-unbind).

    Raises:
        ValueError: A bad username, role, password or subject (the CLI exits 2 with the message).
    """
    from inference._common_cli import format_table
    from inference.record import Conflict, HeadAnchor, NotFound, Record
    from inference.services import add_user, disable_user, list_users, unbind_user

    out = stream if stream is not None else sys.stdout
    record = Record(settings.record_url, anchor=HeadAnchor(settings.resolved_home))
    try:
        record.migrate()
        if args.user_command == "add":
            source = stdin if stdin is not None else sys.stdin
            sso_only = getattr(args, "sso_only", False)
            subject = getattr(args, "sso_subject", None)
            password = None if sso_only else _read_password(source, from_stdin=args.password_stdin)
            try:
                add_user(
                    record, username=args.username, password=password, role=args.role, facility=args.facility,
                    sso_issuer=settings.ui.ui_oidc_issuer, sso_subject=subject,
                )  # fmt: skip
            except Conflict as e:
                sys.stderr.write(f"dxassist: {e}\n")
                return 1
            _audit_account(record, action="user:add", username=args.username)
            if subject is not None:
                _audit_account(record, action="user:sso_bind", username=args.username)
            bound = "; bound to its identity-provider subject" if subject is not None else ""
            out.write(
                f"account {args.username} added (role {args.role}, facility {args.facility or '-'}){bound}\n"
            )
        elif args.user_command == "list":
            rows = [
                [u["username"], u["role"], u["facility"] or "-", u["state"],
                 "sso only" if u["sso_only"] else "password or sso",
                 "bound" if u["sso_bound"] else "-",
                 u["last_sign_in"].strftime("%Y-%m-%d %H:%M") if u["last_sign_in"] else "-"]
                for u in list_users(record)
            ]  # fmt: skip
            header = ["username", "role", "facility", "state", "sign-in", "sso subject", "last sign-in"]
            out.write(format_table(header, rows) + "\n")
        elif args.user_command == "sso-unbind":
            try:
                was = unbind_user(record, username=args.username)
            except NotFound as e:
                sys.stderr.write(f"dxassist: {e}\n")
                return 1
            if not was:
                out.write(f"account {args.username} was not bound; nothing changed\n")
                return 0
            _audit_account(record, action="user:sso_unbind", username=args.username)
            out.write(f"account {args.username} unbound; its next single sign-on binds it again\n")
        else:
            try:
                disable_user(record, username=args.username)
            except NotFound as e:
                sys.stderr.write(f"dxassist: {e}\n")
                return 1
            _audit_account(record, action="user:disable", username=args.username)
            out.write(f"account {args.username} disabled; its sessions are closed\n")
    finally:
        record.close()
    return 0


def _read_password(stdin: TextIO, *, from_stdin: bool) -> str:
    if from_stdin:
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat the password: ") != first:
        raise ValueError("The two passwords differ; nothing was changed.")
    return first
