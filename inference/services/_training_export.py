"""The feedback loop's export: kept model inputs + readers' verdicts -> a ``dxassist-export`` data set.

``dxassist export-training-set --out DIR`` (no ``--source``) writes what ``dxassist train imaging
--dataset dxassist-export --data DIR`` reads::

    DIR/labels.csv     file,split,view,<finding codes...>,model_name,model_version,readers,reader_labels,
                       disagreements
    DIR/verdicts.csv   every reader verdict: result_ref,finding,reader_ref,verdict,label,model_version,
                       model_probability,model_positive
    DIR/inputs/<ref>.npz   the model input (float16, the model's working resolution, with mean and std)
    DIR/manifest.json  format, counts, the labelling rule, ``content_sha256``: the digest of the export's
                       content (:func:`content_digest`), which the reader checks and training tags

Labels: a finding a reader judged takes the readers' label (``agree`` keeps the model's call,
``disagree`` flips it, ``correct`` gives it); when readers disagree the majority wins and a tie counts
positive (missing a finding costs more than a second look), and ``disagreements`` counts those findings.
A finding no reader judged takes the model's filed call: the reader closed the result without
correcting it. ``reader_labels`` counts the findings a reader judged; the training run records the total.

Only results whose patient still allows AI processing are exported; result, patient and reader are
replaced by keyed digests (the site's de-identification secret), so the export links to nothing.
The split is drawn per patient digest (70/15/15), so one patient's studies never straddle two splits.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from inference.record import AuditIn, LabelledInput, RecordError, TrainingInputs
from inference.vocabulary import FINDINGS

if TYPE_CHECKING:
    from inference.record import Record

FORMAT = "dxassist-export"
LABELS_FILE = "labels.csv"
VERDICTS_FILE = "verdicts.csv"
MANIFEST_FILE = "manifest.json"
STAGING = ".partial"
"""The folder inside the export's where it is written until audited: only the inputs of patients who allow
AI processing when the export's entries are appended are then moved out of it, and nothing of it remains
when the export fails."""
LABEL_EXTRA = ("model_name", "model_version", "readers", "reader_labels", "disagreements")
VERDICT_COLUMNS = (
    "result_ref",
    "finding",
    "reader_ref",
    "verdict",
    "label",
    "model_version",
    "model_probability",
    "model_positive",
)


@dataclass(frozen=True)
class ExportCounts:
    """What an export wrote."""

    inputs: int
    patients: int
    reader_labels: int
    verdicts: int
    disagreements: int


def content_digest(root: Path) -> str:
    """The sha256 of an export's content: over one line ``<sha256 of the file>  <relative path>`` per file
    under ``root`` but ``manifest.json``, in the sorted order of the paths (POSIX separators).

    Only the files' bytes and names count (no timestamp, no absolute path), so two exports of the same
    inputs and labels have the same digest wherever and whenever they were written. The training side
    (``training.data._adapters_export``) computes the same digest to check an export before reading it.
    """
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    files.pop(MANIFEST_FILE, None)
    lines = (f"{hashlib.sha256(files[name].read_bytes()).hexdigest()}  {name}\n" for name in sorted(files))
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def recorded_digest(root: Path) -> str:
    """The ``content_sha256`` that the manifest of the export at ``root`` names (compare it with
    :func:`content_digest` of ``root`` to tell whether the files changed since the export).

    Raises:
        ValueError: ``root`` holds no readable ``dxassist-export`` manifest, or it names no digest (an
            export written before the digest was).
    """
    try:
        manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{root} holds no readable {MANIFEST_FILE}: it is not a training export.") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"The {MANIFEST_FILE} of {root} is not that of a '{FORMAT}' training export.")
    digest = manifest.get("content_sha256")
    if not isinstance(digest, str) or not digest:
        raise ValueError(
            f"The {MANIFEST_FILE} of {root} names no content_sha256 (an export written before the digest "
            "was): there is nothing to check its files against."
        )
    return digest


def _ref(secret: bytes, kind: str, value: str, length: int = 20) -> str:
    return hmac.new(secret, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()[:length]


def _split(patient_ref: str) -> str:
    bucket = int(hashlib.sha256(patient_ref.encode()).hexdigest()[:8], 16) % 100
    return "train" if bucket < 70 else ("val" if bucket < 85 else "test")


def _consensus(labels: Sequence[bool]) -> tuple[bool, bool]:
    """(label, disagreement): the majority, a tie positive."""
    positives = sum(1 for label in labels if label)
    return positives * 2 >= len(labels), 0 < positives < len(labels)


def _rows(
    item: LabelledInput, secret: bytes, file: str, codes: Sequence[str]
) -> tuple[dict[str, str], list[dict[str, str]], int, int]:
    result_ref = _ref(secret, "result", item.result_id)
    by_code: dict[str, list[bool]] = {}
    verdict_rows = []
    for label in item.labels:
        by_code.setdefault(label.code, []).append(label.label)
        verdict_rows.append(
            {
                "result_ref": result_ref,
                "finding": label.code,
                "reader_ref": _ref(secret, "reader", label.reader, 12),
                "verdict": label.verdict,
                "label": "1" if label.label else "0",
                "model_version": label.model_version,
                "model_probability": f"{label.model_probability:.6f}",
                "model_positive": "1" if label.model_positive else "0",
            }
        )
    row = {"file": file, "split": _split(_ref(secret, "patient", item.patient_id)), "view": ""}
    disagreements = 0
    for code in codes:
        if code in by_code:
            value, disagreed = _consensus(by_code[code])
            disagreements += int(disagreed)
        else:
            value = bool(item.model_calls.get(code, False))
        row[code] = "1" if value else "0"
    row.update(
        model_name=item.model_name,
        model_version=item.model_version,
        readers=";".join(sorted({_ref(secret, "reader", lab.reader, 12) for lab in item.labels})),
        reader_labels=str(len(by_code)),
        disagreements=str(disagreements),
    )
    return row, verdict_rows, len(by_code), disagreements


def audit_export(record: Record, audit: AuditIn, *, out: Path, patients: Sequence[str]) -> None:
    """The entries of a training-set export to ``out`` (a folder that was new or empty): one per patient
    exported (one naming no patient when none was), on the ``TrainingExport`` named as ``out``, all in
    one transaction, so an auditor asking who saw a patient's data finds the export.

    Raises:
        RecordError: The entries could not be written: everything written to ``out`` is removed (nothing
            leaves the record unaudited).
    """
    named: list[str | None] = [*dict.fromkeys(patients)] or [None]
    entries = [
        {
            "subject": audit.subject,
            "role": audit.role,
            "facility": audit.facility,
            "action": audit.action,
            "resource_type": "TrainingExport",
            "resource_id": out.name[:128],
            "patient_id": patient_id,
            "outcome": "success",
            "client": audit.client,
        }
        for patient_id in named
    ]
    try:
        record.audit.append_many(entries=entries)
    except RecordError:
        _remove_written(out)
        raise


def _remove_written(out: Path) -> None:
    """Remove everything written to ``out`` (an export whose entries could not be written)."""
    for written in out.iterdir() if out.is_dir() else ():
        if written.is_dir() and not written.is_symlink():
            shutil.rmtree(written, ignore_errors=True)
        else:
            written.unlink(missing_ok=True)


def _drop_rows(handle: TextIO, dropped: Callable[[dict[str, str]], bool]) -> None:
    """Rewrite the CSV file open for writing as ``handle`` without the rows ``dropped`` selects; the
    handle stays open at its end, for more rows."""
    handle.flush()
    with open(handle.name, newline="", encoding="utf-8") as reading:
        reader = csv.DictReader(reading)
        fields = list(reader.fieldnames or [])
        kept = [row for row in reader if not dropped(row)]
    handle.seek(0)
    handle.truncate()
    writer = csv.DictWriter(handle, fieldnames=fields)
    writer.writeheader()
    writer.writerows(kept)


def export_kept_inputs(
    record: Record,
    *,
    out: Path,
    secret: bytes,
    audit: AuditIn,
    model_name: str = "cxr-findings",
    report: TextIO,
) -> ExportCounts:
    """Write the ``dxassist-export`` data set of every labelled kept input of ``model_name`` to ``out``.

    The export is audited (``audit``, on the ``TrainingExport`` named as ``out``): one entry per patient
    exported (one naming no patient when none was), so an auditor asking who saw a patient's data finds
    it. No transaction is open while the files are written (each input is read in a short one of its
    own), so filings go on meanwhile, on SQLite too, and a stalled destination costs no database session.
    The entries are appended in one short transaction that reads every exported patient's consent again:
    a consent withdrawn meanwhile is wholly before the export's entries (the patient's inputs and rows
    removed from ``out``) or after them on the trail.

    Args:
        record: The patient record.
        out: A new or empty folder; the export is written to its :data:`STAGING` folder and moved into it
            once audited.
        secret: The site's de-identification secret (keyed digests of results, patients, readers).
        audit: Who exports, and the action.
        model_name: The model whose inputs are exported.
        report: Where the one-line summary goes.

    Raises:
        RecordError: The inputs could not be read or the entries written: what was written to ``out`` is
            removed (as it is whatever else stops the export: a full disk, an interrupt).
    """
    staging = out / STAGING
    try:
        counts = _export_staged(
            record, staging=staging, secret=secret, audit=audit, resource_id=out.name, model_name=model_name
        )
        _publish(staging, out)
    except BaseException:
        # Unaudited, or not all of it may be exported: none of it stays on disk.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.write(
        f"exported {counts.inputs} labelled input(s) of {counts.patients} patient(s) "
        f"({counts.reader_labels} reader label(s), {counts.verdicts} verdict(s), "
        f"{counts.disagreements} disagreement(s)) "
        f"to {out} as '{FORMAT}'; train with "
        f"`dxassist train imaging --dataset {FORMAT} --data {out} --register`\n"
    )
    return counts


def _export_staged(
    record: Record, *, staging: Path, secret: bytes, audit: AuditIn, resource_id: str, model_name: str
) -> ExportCounts:
    """Write the export to ``staging``, audited, with its manifest: when it returns, only the inputs and
    rows that may be exported are there."""
    codes = list(FINDINGS)
    inputs_dir = staging / "inputs"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    # Per result written: (readers' labels, verdicts, disagreements, input size), so that the results of
    # a patient who objected while the export ran can be taken out of the counts.
    tallies: dict[str, tuple[int, int, int, int]] = {}
    with (
        (staging / LABELS_FILE).open("w", newline="", encoding="utf-8") as labels_handle,
        (staging / VERDICTS_FILE).open("w", newline="", encoding="utf-8") as verdicts_handle,
    ):
        labels_writer = csv.DictWriter(
            labels_handle, fieldnames=["file", "split", "view", *codes, *LABEL_EXTRA]
        )
        verdicts_writer = csv.DictWriter(verdicts_handle, fieldnames=list(VERDICT_COLUMNS))
        labels_writer.writeheader()
        verdicts_writer.writeheader()

        def write(item: LabelledInput) -> None:
            name = f"inputs/{_ref(secret, 'result', item.result_id)}.npz"
            (staging / name).write_bytes(item.pixels)
            row, rows, judged, disagreed = _rows(item, secret, name, codes)
            labels_writer.writerow(row)
            verdicts_writer.writerows(rows)
            tallies[item.result_id] = (judged, len(rows), disagreed, item.input_size)

        # The entries name exactly the patients whose data is exported, from one state of their consent:
        # the results of those who objected while the files were written are left out.
        exported = TrainingInputs(record.sessions).export_labelled(
            write=write, audit=audit, resource_id=resource_id, model_name=model_name
        )
        if exported.left_out:
            # Rare: their inputs and rows go before anything is published.
            refs = {_ref(secret, "result", result_id) for result_id in exported.left_out}
            for ref in refs:
                (inputs_dir / f"{ref}.npz").unlink(missing_ok=True)
            _drop_rows(labels_handle, lambda row: Path(row["file"]).stem in refs)
            _drop_rows(verdicts_handle, lambda row: row["result_ref"] in refs)
            for result_id in exported.left_out:
                tallies.pop(result_id, None)
    inputs = len(tallies)
    reader_labels = sum(t[0] for t in tallies.values())
    verdicts = sum(t[1] for t in tallies.values())
    disagreements = sum(t[2] for t in tallies.values())
    sizes = {t[3] for t in tallies.values()}
    patients = len(exported.patients)
    counts = ExportCounts(inputs, patients, reader_labels, verdicts, disagreements)
    manifest: dict[str, object] = {
        "format": FORMAT,
        "model_name": model_name,
        "findings": codes,
        "input_sizes": sorted(sizes),
        "inputs": inputs,
        "patients": patients,
        "reader_labels": reader_labels,
        "verdicts": verdicts,
        "disagreements": disagreements,
        "content_sha256": content_digest(staging),
        "labels": (
            "readers' verdicts (agree keeps the model's call, disagree flips it, correct gives it); the "
            "majority when readers disagree, a tie positive; findings no reader judged keep the model's call"
        ),
        "deidentification": (
            "model inputs only (windowed, letterboxed pixels at the model's resolution, no header); images "
            "declaring burned-in annotation are never kept; result, patient and reader as keyed digests"
        ),
    }
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return counts


def _publish(staging: Path, out: Path) -> None:
    """Move the export from ``staging`` into ``out`` (its parent), each entry renamed in one step, the
    manifest last: a reader who finds the manifest finds the whole export."""
    for name in ("inputs", LABELS_FILE, VERDICTS_FILE, MANIFEST_FILE):
        (staging / name).replace(out / name)
    staging.rmdir()
