"""STOW-RS: each instance is validated on its own, then every study received is analysed and filed.

Analysis runs before the answer, so a 200 means every listed instance's result is committed (a PACS
that gets no answer resends, and a resend returns the same results). Failures are per instance, with
the DICOM failure reasons of PS3.18 (table 10.5.3-1 / PS3.7 status codes).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from io import BytesIO
from typing import TYPE_CHECKING, Final

from inference.dicom import (
    ACCEPTED_SOP_CLASSES,
    TOO_LARGE,
    UNSUPPORTED_CONTENT,
    DicomRejected,
    Instance,
    Study,
    one_patient,
    read_instance,
    select_frontal,
)
from inference.errors import InferenceError
from inference.record import Conflict, ConsentObjection, InvalidData, RecordError
from inference.runtime import ModelUnavailable
from inference.services._context import Actor, Context
from inference.services._imaging import analyse_decoded, instance_in, join_analysed

if TYPE_CHECKING:
    from inference.runtime import ServedModel

logger = logging.getLogger(__name__)

DICOM_MEDIA_TYPE: Final = "application/dicom"

# PS3.7 / PS3.18 failure reasons.
PROCESSING_FAILURE: Final = 0x0110  # our fault: a bug or an unexpected failure, logged
NOT_AUTHORIZED: Final = 0x0124  # PS3.7 C.4.2 "Refused: Not Authorized": here, the patient's objection
SOP_CLASS_NOT_SUPPORTED: Final = 0x0122
OUT_OF_RESOURCES: Final = 0xA700  # too large, or the model or record is unavailable now: send again later
UNAVAILABLE: Final = "unavailable"  # the code of an instance refused only for now (model or record down)
DATASET_DOES_NOT_MATCH: Final = 0xA900  # a supported SOP class whose content we refuse (422)
CANNOT_UNDERSTAND: Final = 0xC000  # broken, inconsistent or not DICOM (400, 415)
TRANSFER_SYNTAX_NOT_SUPPORTED: Final = 0xC122

_UID: Final = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# Refusals made before or while pydicom parses: such a file is never handed to pydicom again.
_UNPARSED: Final = frozenset(
    {
        "not_dicom",
        "truncated",
        "malformed_header",
        "nesting_too_deep",
        "deflate_bomb",
        "instance_too_large",
        "unsupported_transfer_syntax",  # refused before the structure walk that bounds nesting
    }
)


@dataclass(frozen=True)
class StoredInstance:
    """An instance accepted and analysed, with the result it is part of."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    result_id: str


@dataclass(frozen=True)
class FailedInstance:
    """An instance refused: its UIDs when they could be read, the DICOM failure reason and our error code."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    reason: int
    code: str
    message: str


@dataclass(frozen=True)
class OversizedPart:
    """A body part larger than ``max_instance_bytes``, left unread: refused by its size (0xA700)."""

    size: int


@dataclass
class StowOutcome:
    """What happened to each instance of a STOW-RS request."""

    stored: list[StoredInstance] = field(default_factory=list)
    failed: list[FailedInstance] = field(default_factory=list)

    @property
    def failed_for_now(self) -> bool:
        """Nothing was stored, and only because the model or the record is unavailable: sending the same
        instances again later may succeed."""
        return bool(self.failed) and not self.stored and all(f.code == UNAVAILABLE for f in self.failed)


def failure_reason(error: DicomRejected, sop_class_uid: str | None = None) -> int:
    """The PS3.18 Failure Reason for an instance refused with ``error``.

    Too large → out of resources (0xA700); unsupported transfer syntax → 0xC122; unsupported content →
    SOP class not supported (0x0122) when the instance's SOP class is not one dxassist analyses, else
    data set does not match SOP class (0xA900: a CR, DX or secondary capture whose content is refused,
    e.g. a blank image); the rest (malformed, not DICOM) → cannot understand (0xC000).
    """
    if error.code == "unsupported_transfer_syntax":
        return TRANSFER_SYNTAX_NOT_SUPPORTED
    if error.kind == TOO_LARGE:
        return OUT_OF_RESOURCES
    if error.kind == UNSUPPORTED_CONTENT:
        supported = sop_class_uid is not None and sop_class_uid in ACCEPTED_SOP_CLASSES
        return DATASET_DOES_NOT_MATCH if supported else SOP_CLASS_NOT_SUPPORTED
    return CANNOT_UNDERSTAND


def _peek_uids(blob: bytes) -> tuple[str | None, str | None]:
    """SOP Class and Instance UIDs of a well-formed file that was refused for its content (best effort)."""
    from pydicom import dcmread

    try:
        ds = dcmread(BytesIO(blob), stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        found = [str(ds.get(k, "") or "").strip() for k in ("SOPClassUID", "SOPInstanceUID")]
    except Exception:  # the file was refused already; its UIDs are a courtesy to the sender
        return None, None
    clean = [u if len(u) <= 64 and _UID.match(u) else None for u in found]
    return clean[0], clean[1]


def _read_part(
    blob: bytes, ctx: Context, target_size: int
) -> Instance | tuple[DicomRejected, str | None, str | None]:
    try:
        return read_instance(blob, limits=ctx.limits, target_size=target_size)
    except DicomRejected as e:
        # The sender needs to know WHICH instance failed: read its UIDs unless the file failed the guards
        # that run before pydicom (a bomb or a broken structure is not parsed a second time).
        uids = (None, None) if e.code in _UNPARSED else _peek_uids(blob)
        return e, uids[0], uids[1]


async def store_instances(
    *,
    ctx: Context,
    actor: Actor,
    parts: Iterable[tuple[str | None, bytes | OversizedPart]],
    accept_language: str | None,
    study_instance_uid: str | None = None,
) -> StowOutcome:
    """Validate every part, group the accepted instances by study, analyse and file each study.

    Args:
        ctx: The process's engines.
        actor: The sender (usually a PACS).
        parts: ``(media type, bytes)`` per body part, read once in order (each part's bytes are
            dropped once its instance is read: a STOW-RS body is never held whole); a part over the
            instance limit comes as :class:`OversizedPart`, never read.
        accept_language: For the stored results' response language (unused in the STOW answer).
        study_instance_uid: The study of the target URI (``/dicomweb/studies/{uid}``): instances of
            another study fail with 0xC000 (``study_mismatch``) and are not stored.

    Raises:
        ModelUnavailable: No imaging model is loaded (nothing is stored; the sender retries).
    """
    served = ctx.host.imaging
    size = served.imaging_meta.input_size
    outcome = StowOutcome()
    by_study: dict[str, list[Instance]] = {}
    for media_type, blob in parts:
        if media_type not in (DICOM_MEDIA_TYPE, None):
            outcome.failed.append(
                FailedInstance(
                    None,
                    None,
                    CANNOT_UNDERSTAND,
                    "unsupported_media_type",
                    f"A body part has media type {media_type[:64]}; "
                    f"STOW-RS parts must be {DICOM_MEDIA_TYPE}.",
                )
            )
            continue
        if isinstance(blob, OversizedPart):
            limit = ctx.limits.max_instance_bytes
            outcome.failed.append(
                FailedInstance(
                    None,
                    None,
                    OUT_OF_RESOURCES,
                    "instance_too_large",
                    f"The DICOM file has {blob.size} bytes, more than the limit of {limit} bytes.",
                )
            )
            continue
        read = await ctx.workers.run(_read_part, blob, ctx, size)
        if isinstance(read, Instance) and study_instance_uid not in (None, read.study_instance_uid):
            outcome.failed.append(
                FailedInstance(
                    read.sop_class_uid,
                    read.sop_instance_uid,
                    CANNOT_UNDERSTAND,
                    "study_mismatch",
                    "The instance belongs to another study than the one of the request's URL.",
                )
            )
        elif isinstance(read, Instance):
            by_study.setdefault(read.study_instance_uid, []).append(read)
        else:
            error, sop_class, sop_instance = read
            outcome.failed.append(
                FailedInstance(
                    sop_class, sop_instance, failure_reason(error, sop_class), error.code, error.message
                )
            )
    for study_uid, instances in by_study.items():
        unique = list({i.sop_instance_uid: i for i in instances}.values())
        failed = await _store_study(ctx, actor, study_uid, unique, accept_language, served, outcome)
        if failed is not None:
            reason, code, message = failed
            outcome.failed += [
                FailedInstance(i.sop_class_uid, i.sop_instance_uid, reason, code, message) for i in unique
            ]
    return outcome


_NO_FRONTAL: Final = "no_frontal_view"


class _Joined(InferenceError):
    """The view a late study's analysis scored ranks below the view of the study's standing result: its
    instances joined the study (:func:`_joins_analysed`), nothing of the analysis is filed."""


async def _joins_analysed(
    ctx: Context,
    actor: Actor,
    study_uid: str,
    instances: list[Instance],
    frontal: str | None,
    outcome: StowOutcome,
    why: str | None = None,
) -> bool:
    """Whether ``instances`` of a study analysed before (a PACS pushing a series that came late) leave its
    result standing, as over DIMSE (:func:`inference.services.join_analysed`); they are then filed in the
    study and answered as stored, with the study's result."""
    patient = instances[0].patient
    analysed = await join_analysed(
        ctx,
        actor,
        study_instance_uid=study_uid,
        instances=tuple(instance_in(i) for i in instances),
        frontal=frontal,
        patient=(patient.patient_id, patient.issuer),
    )
    if analysed is None:
        return False
    logger.info(
        "instances of a study analysed before arrived; its result stands",
        extra={
            "event": "stow_study",
            "code": "already_analysed",
            "outcome": why or (_NO_FRONTAL if frontal is None else "lower_ranked_view"),
            "result_id": analysed.result_id,
            "instances": len(analysed.joined),
        },
    )
    outcome.stored += [
        StoredInstance(i.sop_class_uid, i.sop_instance_uid, study_uid, analysed.result_id) for i in instances
    ]
    return True


async def _store_study(
    ctx: Context,
    actor: Actor,
    study_uid: str,
    instances: list[Instance],
    accept_language: str | None,
    served: ServedModel,
    outcome: StowOutcome,
) -> tuple[int, str, str] | None:
    """Analyse and file one study of the request; on failure, ``(reason, code, message)`` for its instances.

    A failure of one study never fails the others: each is reported with its own reason, and a study
    already filed by an earlier send is found again (the resend of a request gets the same answer).
    """
    try:
        one_patient(instances)
        try:
            primary = select_frontal(instances)
        except DicomRejected as e:
            if e.code == _NO_FRONTAL and await _joins_analysed(
                ctx, actor, study_uid, instances, None, outcome
            ):
                return None
            raise
        if await _joins_analysed(ctx, actor, study_uid, instances, primary.view_position or "", outcome):
            return None
        study = Study(study_instance_uid=study_uid, instances=tuple(instances), primary=primary)

        async def judge_scored(view: Instance, assessable: bool) -> None:
            # The model refused the view chosen by its tag (a lateral tagged PA): judged by the one scored;
            # one the model refused (none of theirs assessable) supersedes nothing.
            if assessable and view.sop_instance_uid == primary.sop_instance_uid:
                return
            frontal = view.view_position or "" if assessable else None
            why = None if assessable else "not_assessable"
            if await _joins_analysed(ctx, actor, study_uid, instances, frontal, outcome, why):
                raise _Joined

        analysed = await analyse_decoded(
            ctx=ctx,
            actor=actor,
            study=study,
            source="stow",
            accept_language=accept_language,
            served=served,
            scored=judge_scored,
        )
    except _Joined:
        return None
    except DicomRejected as e:
        sop_classes = {i.sop_class_uid for i in instances}
        return failure_reason(e, sop_classes.pop() if len(sop_classes) == 1 else None), e.code, e.message
    except ConsentObjection as e:
        return NOT_AUTHORIZED, e.code, str(e)
    except Conflict as e:
        return DATASET_DOES_NOT_MATCH, e.code, str(e)
    except InvalidData as e:  # a value the record cannot hold: sending it again fails again
        return CANNOT_UNDERSTAND, e.code, str(e)
    except (ModelUnavailable, RecordError) as e:
        # Transient: the sender may send these instances again later.
        logger.warning("a STOW-RS study could not be filed now (%s)", type(e).__name__)
        return OUT_OF_RESOURCES, UNAVAILABLE, "The study could not be analysed now; send it again later."
    except Exception as e:  # a bug must not fail the request's other studies: logged, reported, no 500
        logger.error("a STOW-RS study failed to be analysed", extra={"code": type(e).__name__}, exc_info=e)
        return (
            PROCESSING_FAILURE,
            "processing_failed",
            "The study could not be analysed; the failure was logged.",
        )
    result_id = analysed.result.result_id
    outcome.stored += [
        StoredInstance(i.sop_class_uid, i.sop_instance_uid, study_uid, result_id) for i in instances
    ]
    return None
