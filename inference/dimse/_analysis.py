"""Analysing a stable study received over DIMSE, and instances of a study that arrive after it was
analysed (late instances join its result, or supersede it)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Final

from inference.dicom import (
    DicomRejected,
    Instance,
    LazyInstances,
    read_study,
)
from inference.dicom._stable import StableStudy
from inference.dimse._identity import (
    delivered_by,
)
from inference.errors import InferenceError
from inference.record import InstanceIn

if TYPE_CHECKING:
    from pydicom import Dataset

    from inference.services import Actor, Context


# Every line of the listener logs under one logger name, whichever module writes it (docs/operations.md).
logger = logging.getLogger("inference.dimse._listener")


async def _analyse(ctx: Context, study: StableStudy) -> bool:
    """Analyse one stable study; True when its folder may be removed.

    Filing the result also queues its SR and heatmap captures for every destination (in the service,
    as for uploads and STOW-RS). A study whose patient objected to AI processing is dropped: the
    objection stands until withdrawn, so trying again would only repeat the refusal; so is one the
    service refuses (a patient under 18, an image smaller than the model's input), as a lateral-only one.

    Instances of a study the record holds a result of (they came after its folder was analysed and
    removed) join that study: see :func:`_result_stands`.
    """
    from inference.record import Conflict, ConsentObjection, InvalidData
    from inference.services import analyse_decoded, instance_in

    served = ctx.host.imaging
    # Read one file at a time as the study is decoded, not all of them up front.
    blobs = LazyInstances(study.files, Path.read_bytes)
    try:
        decoded = await ctx.workers.run(
            read_study, blobs, limits=ctx.limits, target_size=served.imaging_meta.input_size
        )
    except DicomRejected as e:
        # Every instance was valid on arrival; the study as a whole is not analysable (lateral only, ...).
        actor = await _actor(ctx, study) if e.code == _NO_FRONTAL else None
        headers = await asyncio.to_thread(_headers_of, study.files) if actor is not None else None
        if actor is not None and headers is not None:
            study_uid, instances, patient = headers
            if await _result_stands(
                ctx, actor, study_instance_uid=study_uid, instances=instances, frontal=None, patient=patient
            ):
                return True
        logger.warning(
            "a received study cannot be analysed (%s)", e.code, extra={"event": "dimse_study", "code": e.code}
        )
        return True
    actor = await _actor(ctx, study)
    if actor is None:
        # Registered when it was received, not any more: nobody may own it, so it is not filed.
        logger.warning(
            "a received study was dropped: its DICOM node is no longer registered",
            extra={"event": "dimse_study", "code": "unknown_node"},
        )
        return True
    frontal = decoded.primary.view_position or ""
    named = decoded.primary.patient
    if await _result_stands(
        ctx,
        actor,
        study_instance_uid=decoded.study_instance_uid,
        instances=tuple(instance_in(instance) for instance in decoded.instances),
        frontal=frontal,
        patient=(named.patient_id, named.issuer),
    ):
        return True

    async def judge_scored(view: Instance, assessable: bool) -> None:
        # The view scored, when the one chosen by its tag was refused as not assessable (a lateral film
        # tagged PA), is what the study's standing result is superseded by or not: judged again by it;
        # a view the model refused (none of theirs assessable) supersedes nothing.
        if assessable and view.sop_instance_uid == decoded.primary.sop_instance_uid:
            return
        if await _result_stands(
            ctx,
            actor,
            study_instance_uid=decoded.study_instance_uid,
            instances=tuple(instance_in(instance) for instance in decoded.instances),
            frontal=view.view_position or "" if assessable else None,
            patient=(named.patient_id, named.issuer),
            outcome=None if assessable else _NOT_ASSESSABLE,
        ):
            raise _ResultStood

    try:
        await analyse_decoded(
            ctx=ctx,
            actor=actor,
            study=decoded,
            source="dimse",
            accept_language=None,
            served=served,
            scored=judge_scored,
        )
    except _ResultStood:
        return True  # the instances joined the study; its result stands (logged as such)
    except DicomRejected as e:
        # Refused by the service before any pixel is scored (a child's film, an image smaller than the
        # model's input): as final as a refusal of the header, so not a failure to try again.
        logger.warning(
            "a received study cannot be analysed (%s)", e.code, extra={"event": "dimse_study", "code": e.code}
        )
        return True
    except ConsentObjection as e:
        # The service wrote the refusal to the audit trail; the log names no patient.
        logger.warning(
            "a received study was dropped: the patient objected to AI processing",
            extra={"event": "dimse_study", "code": e.code},
        )
        return True
    except Conflict as e:
        # Not a resend (another facility's UIDs, other pixels): audited by the service; retrying repeats it.
        logger.warning(
            "a received study was dropped: it conflicts with what the record holds",
            extra={"event": "dimse_study", "code": e.code},
        )
        return True
    except InvalidData as e:
        # A value the record cannot hold (an issuer too long once upper-cased): retrying repeats it.
        logger.warning(
            "a received study was dropped: a value does not fit the record",
            extra={"event": "dimse_study", "code": e.code},
        )
        return True
    # Filed with a pending build of its outputs in the same transaction: the outbox worker builds them.
    return True


_NO_FRONTAL: Final = "no_frontal_view"
_NOT_ASSESSABLE: Final = "not_assessable"


class _ResultStood(InferenceError):
    """The view a late study's analysis scored ranks below the view of the study's standing result: the
    instances joined the study (:func:`_result_stands`) and nothing is filed of the analysis."""


async def _actor(ctx: Context, study: StableStudy) -> Actor | None:
    """Who files ``study``: its node, for the node's facility (as a facility-bound pacs token would), with
    the certificate(s) that delivered it over mutual TLS; None when the node is no longer registered."""
    from inference.security import Principal
    from inference.services import Actor

    facility = ctx.settings.dimse.node_facility(study.sender)
    if facility is None:
        return None
    return Actor(
        Principal(subject=f"dimse:{study.sender or 'unknown'}", role="pacs", facility=facility),
        client=await asyncio.to_thread(delivered_by, study.folder),
    )


def _headers_of(
    files: tuple[Path, ...],
) -> tuple[str, tuple[InstanceIn, ...], tuple[str, str | None]] | None:
    """The Study Instance UID, the instances (as the record files them, their Pixel Data digested as
    :func:`inference.dicom.read_instance` digests it) and the patient (Patient ID, Issuer of Patient ID)
    of a study's files, which were each read whole and found valid on arrival (the folder is its
    study's); None when one cannot be read, or they name more than one study or patient."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    def text(ds: Dataset, keyword: str) -> str:
        return str(ds.get(keyword) or "").strip()

    studies = set()
    patients = set()
    instances = []
    try:
        for path in files:
            ds = dcmread(path)
            studies.add(text(ds, "StudyInstanceUID"))
            patients.add((text(ds, "PatientID"), text(ds, "IssuerOfPatientID") or None))
            instances.append(
                InstanceIn(
                    sop_instance_uid=text(ds, "SOPInstanceUID"),
                    sop_class_uid=text(ds, "SOPClassUID"),
                    series_instance_uid=text(ds, "SeriesInstanceUID"),
                    modality=text(ds, "Modality").upper(),
                    view_position=text(ds, "ViewPosition").upper() or None,
                    pixel_digest=hashlib.sha256(ds.PixelData).hexdigest(),
                )
            )
            del ds
    except (InvalidDicomError, AttributeError, TypeError, ValueError, EOFError, OSError):
        return None
    if len(studies) != 1 or len(patients) != 1:
        return None
    return studies.pop(), tuple(instances), patients.pop()


async def _result_stands(
    ctx: Context,
    actor: Actor,
    *,
    study_instance_uid: str,
    instances: tuple[InstanceIn, ...],
    frontal: str | None,
    patient: tuple[str, str | None],
    outcome: str | None = None,
) -> bool:
    """Whether instances of a study that arrived after it was analysed leave its result as it is; they
    then join the study in the record.

    A PACS may send an instance of a study after the study's quiet period, once its folder was analysed
    and removed (a view taken later, a series forwarded late). Those instances belong to the study the
    record already holds a result of (for this node's facility), and are judged as if they had come with
    it: the view analysed is the best frontal view of them all (:func:`inference.dicom.select_frontal`).
    So the result stands (nothing is refused, no result filed) when they hold no frontal view (a lateral
    only: ``frontal`` None) or only one of a lower rank than the view the result analysed (an AP after a
    PA): the instances are filed in the study, without a result of their own (its FHIR ImagingStudy
    counts and lists them, as the PACS holds them), and the result and its SR are left as they are. A
    frontal of the same or a higher rank (a retake, a PA after an AP) is analysed, and its result
    supersedes the earlier one (its SR names the earlier SR). Instances the record holds already in the
    study with the same pixels (a resend) are judged likewise, and not filed twice. Instances filed under
    another study or with other pixels, or naming another patient than the study's, are analysed as
    before: filing them is refused as a conflict, audited and logged, and nothing of the study's patient
    is read for them.

    The record is read for the node and the instances filed in one transaction, audited
    ``studies:submit`` on the study's result (the read) and on its ImagingStudy (the instances filed).

    Args:
        instances: The instances that arrived.
        frontal: View Position of the frontal view judged (empty when not given; the best one by its
            tag, then the one the analysis scored when the model refused that one); None: none.
        patient: The Patient ID and Issuer of Patient ID (None: not given) they name.
        outcome: Why it stands, as logged (default: ``no_frontal_view`` when ``frontal`` is None, else
            ``lower_ranked_view``; ``not_assessable``: the model refused every frontal view of theirs).

    Raises:
        RecordError: The record could not be read or written (the study is tried again later).
    """
    from inference.services import join_analysed

    analysed = await join_analysed(
        ctx,
        actor,
        study_instance_uid=study_instance_uid,
        instances=instances,
        frontal=frontal,
        patient=patient,
    )
    if analysed is None:
        return False
    outcome = outcome or (_NO_FRONTAL if frontal is None else "lower_ranked_view")
    logger.info(
        "instances of a study analysed before arrived; its result stands (%s)",
        {
            _NO_FRONTAL: "no frontal view among them",
            _NOT_ASSESSABLE: "the model could not assess their views",
        }.get(outcome, "the view it analysed ranks above theirs"),
        extra={
            "event": "dimse_study",
            "code": "already_analysed",
            "outcome": outcome,
            "result_id": analysed.result_id,
            "instances": len(analysed.joined),
        },
    )
    return True
