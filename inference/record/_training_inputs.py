"""What retraining on the hospital's own studies needs, kept per imaging result while consent allows it.

The model input of a result (the radiograph windowed, letterboxed and normalised at the model's working
resolution, ``S x S``) is stored as a float16 ``npz`` of a few tens of KB, with the preprocessing
parameters that made it. At that resolution, with no header kept, it is de-identified pixels: images
whose header declares burned-in annotation are never kept. A patient who objects to AI processing has
their kept inputs deleted in the same transaction as the objection (``forget``), and the export checks
the consent again when it runs.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

import numpy as np
from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Table, delete, func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column, selectinload, sessionmaker

from inference.record import _audit, _consent
from inference.record._engine import IMMEDIATE
from inference.record._errors import RecordError
from inference.record._inputs import AuditIn
from inference.record._models import Base, Feedback, Result
from inference.record._shadow import reader_truth
from inference.record._types import UTCDateTime, utcnow

KEEPER_SUBJECT = "dxassist-training-inputs"
DEFLATE_LEVEL = 1
"""libdeflate level of a kept input's ``npz``: level 2 is 4 % smaller at three times the cost."""
# Zip records (APPNOTE 4.3): signatures, version 2.0 (deflate), method 8, 1980-01-01 00:00 as a DOS date.
_LOCAL, _CENTRAL, _END = 0x04034B50, 0x02014B50, 0x06054B50
_ZIP_VERSION, _ZIP_DEFLATED, _DOS_1980 = 20, 8, (1 << 5) | 1


class TrainingInput(Base):
    """The de-identified model input of one imaging result (float16 ``npz``)."""

    __tablename__ = "training_inputs"

    result_id: Mapped[str] = mapped_column(ForeignKey("results.id"), primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    input_size: Mapped[int] = mapped_column(Integer)
    pixels: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[datetime] = mapped_column(UTCDateTime())


def _npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An ``npz`` archive (a zip of deflated ``.npy`` members, what :func:`numpy.load` reads).

    The members are compressed by libdeflate at :data:`DEFLATE_LEVEL` and the zip's headers are written
    here (PKZIP 2.0: local headers, central directory, end record; fixed 1980-01-01 timestamps, so the
    same input gives the same bytes). :mod:`zipfile` would compress through zlib, several times slower.
    """
    import deflate

    local: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    for name, array in arrays.items():
        raw = io.BytesIO()
        np.lib.format.write_array(raw, np.asanyarray(array), allow_pickle=False)
        data = raw.getbuffer()
        packed = deflate.deflate_compress(data, DEFLATE_LEVEL)
        if max(len(data), len(packed), offset) >= 0xFFFFFFFF:
            raise ValueError("A model input too large for a zip archive without ZIP64.")
        key = f"{name}.npy".encode("ascii")
        crc = deflate.crc32(data)
        fields = (_ZIP_VERSION, 0, _ZIP_DEFLATED, 0, _DOS_1980, crc, len(packed), len(data), len(key))
        local.append(struct.pack("<I5H3IHH", _LOCAL, *fields, 0) + key + packed)
        central.append(
            struct.pack("<IH5H3I5HII", _CENTRAL, _ZIP_VERSION, *fields, 0, 0, 0, 0, 0, offset) + key
        )
        offset += len(local[-1])
    directory = b"".join(central)
    end = struct.pack("<IHHHHIIH", _END, 0, 0, len(central), len(central), len(directory), offset, 0)
    return b"".join((*local, directory, end))


def encode_input(
    tensor: np.ndarray, *, mean: float, std: float, window_percentiles: tuple[float, float]
) -> bytes:
    """A model input ``[1, S, S]`` as a compressed float16 ``npz`` with the parameters that made it.

    The archive holds what :func:`numpy.savez_compressed` wrote before (the same members, read back by
    :func:`numpy.load`), deflated by libdeflate at level 1 (:func:`_npz`): on the benchmark film 34.8 KB
    in 0.4 ms, where :func:`numpy.savez_compressed` (zlib at level 6) took 2.2 ms for 33.6 KB.
    """
    return _npz(
        {
            "tensor": np.asarray(tensor, dtype=np.float16).reshape(tensor.shape[-2:]),
            "mean": np.asarray(np.float64(mean)),
            "std": np.asarray(np.float64(std)),
            "window_percentiles": np.asarray(window_percentiles, dtype=np.float64),
        }
    )


def decode_input(data: bytes) -> tuple[np.ndarray, float, float]:
    """``(tensor [S, S] float32, mean, std)`` of :func:`encode_input` bytes (``ValueError`` if malformed)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return npz["tensor"].astype(np.float32), float(npz["mean"]), float(npz["std"])
    except (OSError, KeyError, ValueError) as e:
        raise ValueError("A kept training input is not a readable npz.") from e


@dataclass(frozen=True)
class ReaderLabel:
    """One reader's label for one finding of a kept input."""

    code: str
    label: bool
    verdict: str
    reader: str
    model_version: str
    model_positive: bool
    model_probability: float


@dataclass(frozen=True)
class LabelledInput:
    """A kept model input with every reader label given on its result."""

    result_id: str
    patient_id: str
    model_name: str
    model_version: str
    input_size: int
    pixels: bytes
    labels: tuple[ReaderLabel, ...]
    model_calls: Mapping[str, bool]


@dataclass(frozen=True)
class ExportedInputs:
    """What :meth:`TrainingInputs.export_labelled` exported: the patients named on the trail, in the order
    exported, and the results handed to ``write`` but left out (their patient objected meanwhile, or their
    input is no longer kept)."""

    patients: list[str]
    left_out: list[str]


class TrainingInputs:
    """Keeping, forgetting and reading back the model inputs of imaging results.

    Args:
        sessions: The record's session factory (``Record.sessions``).
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def keep(
        self, *, result_id: str, model_name: str, model_version: str, input_size: int, pixels: bytes
    ) -> bool:
        """Keep the input of ``result_id`` if its patient's consent allows AI processing, with an audit entry.

        Returns:
            True when kept; False when the patient objected, the result is gone or it was kept already.

        Raises:
            RecordError: The database refused the write.
        """
        try:
            with self._sessions() as session, session.begin():
                session.connection(execution_options={IMMEDIATE: True})
                return keep_in(
                    session,
                    result_id=result_id,
                    model_name=model_name,
                    model_version=model_version,
                    input_size=input_size,
                    pixels=pixels,
                )
        except IntegrityError:
            return False
        except SQLAlchemyError as e:
            raise RecordError("The training input could not be stored.") from e

    def count(self) -> int:
        """Inputs kept."""
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(TrainingInput)) or 0)

    def export_labelled(
        self,
        *,
        write: Callable[[LabelledInput], None],
        audit: AuditIn,
        resource_id: str,
        model_name: str | None = None,
    ) -> ExportedInputs:
        """Hand ``write`` every kept input whose result has readers' verdicts and whose patient allows AI
        processing, then audit the export; return the patients exported and the results left out.

        Each input is read, with its patient's consent, in a short reading transaction of its own, closed
        before ``write`` runs: no transaction is open while the files are written, so filings go on (on
        SQLite too, whose one write lock a long transaction would hold) and a destination that stalls
        costs no session (PostgreSQL ends one left idle inside a transaction). Then one short transaction
        locks the audit chain's head, reads again the consent of every patient exported and whether each
        input is still kept, and appends the entries: the results of a patient who objected meanwhile
        (or whose input is gone) are left out, named in ``left_out`` for the caller to take out of what it
        wrote. So a consent withdrawn meanwhile is wholly before the export's entries (its patient is left
        out) or wholly after them.

        The entries (``audit``'s action on the ``TrainingExport`` ``resource_id``, outcome ``success``)
        are one per patient exported, or one naming no patient when none was. Reads one result at a time
        (each let go once written), so memory stays bounded.

        Raises:
            RecordError: The record failed, or the entries could not be written (what ``write`` wrote
                must then be undone by the caller); what ``write`` raises is raised before any entry.
        """
        exported: dict[str, list[str]] = {}  # patient -> its results written, in the order exported
        try:
            with self._sessions() as session, session.begin():
                query = select(TrainingInput.result_id).join(
                    Feedback, Feedback.result_id == TrainingInput.result_id
                )
                if model_name is not None:
                    query = query.where(TrainingInput.model_name == model_name)
                result_ids = sorted(set(session.scalars(query)))
            for result_id in result_ids:
                with self._sessions() as session, session.begin():
                    item = _labelled_in(session, result_id)
                if item is None:
                    continue
                write(item)  # outside any transaction
                exported.setdefault(item.patient_id, []).append(result_id)
            with self._sessions() as session, session.begin():
                session.connection(execution_options={IMMEDIATE: True})
                # Locked now, the head orders every consent change before or after what follows; on
                # PostgreSQL (READ COMMITTED) each statement from here sees every change committed before.
                head = _audit.lock_head_row(session)
                left_out = _left_out(session, exported)
                now = utcnow()
                _audit.append_all_onto(
                    session,
                    head,
                    [
                        _audit.columns_of(
                            audit,
                            resource_type="TrainingExport",
                            resource_id=resource_id[:128],
                            patient_id=patient_id,
                            outcome="success",
                            time=now,
                        )
                        for patient_id in list[str | None]([*exported]) or [None]
                    ],
                )
        except SQLAlchemyError as e:
            raise RecordError("The export could not be audited; nothing was exported.") from e
        return ExportedInputs(patients=list(exported), left_out=left_out)


_CHUNK = 500
"""Result ids per ``IN`` list (SQLite allows 32766 parameters, PostgreSQL 65535)."""


def _left_out(session: Session, exported: dict[str, list[str]]) -> list[str]:
    """The results of ``exported`` (patient -> results) that may no longer be exported: every result of a
    patient who objected to AI processing, and any input no longer kept. They are taken out of
    ``exported`` (a patient left with none with them)."""
    written = [result for results in exported.values() for result in results]
    kept: set[str] = set()
    for start in range(0, len(written), _CHUNK):
        chunk = written[start : start + _CHUNK]
        kept.update(
            session.scalars(select(TrainingInput.result_id).where(TrainingInput.result_id.in_(chunk)))
        )
    left_out: list[str] = []
    for patient in list(exported):
        allowed = _consent.state(session, patient).ai_processing
        gone = [result for result in exported[patient] if not allowed or result not in kept]
        left_out.extend(gone)
        exported[patient] = [result for result in exported[patient] if result not in gone]
        if not exported[patient]:
            del exported[patient]
    return left_out


def _labelled_in(session: Session, result_id: str) -> LabelledInput | None:
    """The kept input of ``result_id`` with its readers' labels; None when it is gone, its patient
    objected to AI processing, or no verdict names one of its findings."""
    row = session.get(TrainingInput, result_id)
    if row is None or not _consent.state(session, row.patient_id).ai_processing:
        return None
    result = session.scalars(
        select(Result).where(Result.id == result_id).options(selectinload(Result.findings))
    ).one()
    findings: Mapping[str, Any] = {f.code: f for f in result.findings}
    labels = []
    for fb in session.scalars(
        select(Feedback).where(Feedback.result_id == result_id).order_by(Feedback.created, Feedback.id)
    ):
        for verdict in fb.verdicts or []:
            finding = findings.get(str(verdict.get("code")))
            if finding is None:
                continue
            labels.append(
                ReaderLabel(
                    code=finding.code,
                    label=reader_truth(verdict, bool(finding.positive)),
                    verdict=str(verdict.get("verdict")),
                    reader=fb.reader,
                    model_version=fb.model_version,
                    model_positive=bool(finding.positive),
                    model_probability=float(finding.probability),
                )
            )
    if not labels:
        return None
    return LabelledInput(
        result_id=result_id,
        patient_id=row.patient_id,
        model_name=row.model_name,
        model_version=row.model_version,
        input_size=row.input_size,
        pixels=bytes(row.pixels),
        labels=tuple(labels),
        model_calls={code: bool(f.positive) for code, f in findings.items()},
    )


def forget(session: Session, patient_id: str) -> int:
    """Delete every kept input of a patient (inside the transaction recording their objection)."""
    outcome = session.execute(delete(TrainingInput).where(TrainingInput.patient_id == patient_id))
    return int(getattr(outcome, "rowcount", 0) or 0)


def keep_in(
    session: Session, *, result_id: str, model_name: str, model_version: str, input_size: int, pixels: bytes
) -> bool:
    """Keep the input of ``result_id`` in ``session``'s transaction if its patient's consent allows AI
    processing, with an audit entry (the filing of a new result calls it in its own transaction).

    Returns:
        True when kept; False when the patient objected, the result is gone or it was kept already.
    """
    result = session.get(Result, result_id)
    if result is None or session.get(TrainingInput, result_id) is not None:
        return False
    return keep_new(
        session,
        result=result,
        consent=_consent.state(session, result.patient_id),
        model_name=model_name,
        model_version=model_version,
        input_size=input_size,
        pixels=pixels,
    )


def keep_new(
    session: Session,
    *,
    result: Result,
    consent: _consent.ConsentState,
    model_name: str,
    model_version: str,
    input_size: int,
    pixels: bytes,
) -> bool:
    """:func:`keep_in` for a result added in ``session``'s own transaction, whose patient's consent was
    read in it (``consent``): nothing can be kept for it yet, so neither is looked up again.

    Returns:
        True when kept; False when the patient objected to AI processing.
    """
    if not consent.ai_processing:
        return False
    _keep(
        session,
        result=result,
        model_name=model_name,
        model_version=model_version,
        input_size=input_size,
        pixels=pixels,
    )
    return True


_INSERT: Final = insert(cast(Table, TrainingInput.__table__))
"""Built once (building and keying a statement costs about as much as running it)."""


def _keep(
    session: Session, *, result: Result, model_name: str, model_version: str, input_size: int, pixels: bytes
) -> None:
    now = utcnow()
    # A Core insert, not an ORM object: nothing reads the row back in this transaction.
    session.execute(
        _INSERT,
        {
            "result_id": result.id,
            "patient_id": result.patient_id,
            "model_name": model_name,
            "model_version": model_version,
            "input_size": input_size,
            "pixels": pixels,
            "created": now,
        },
    )
    # Written with the rest of the transaction at its flush (the result's own entry is too).
    _audit.append_unflushed(
        session,
        time=now,
        subject=KEEPER_SUBJECT,
        role="system",
        facility=result.facility,
        action="training-input:keep",
        resource_type="TrainingInput",
        resource_id=result.id,
        patient_id=result.patient_id,
        outcome="success",
        client=None,
    )
