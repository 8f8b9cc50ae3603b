"""Filing a result with its audit entry in one transaction; a refused resend is audited on its own."""

from __future__ import annotations

import logging

from inference.record import Conflict, ImagingResultIn, StoredResult, TriageResultIn
from inference.security import scope_for
from inference.services._access import audit, audit_entry
from inference.services._context import Actor, Context, db

logger = logging.getLogger(__name__)


async def file_result(
    ctx: Context, actor: Actor, *, data: ImagingResultIn | TriageResultIn, action: str
) -> StoredResult:
    """Commit a result and its audit entry together (nothing filed unaudited, nothing audited unfiled).

    Raises:
        Conflict: The data contradicts the record (a resend from another facility or with other pixels,
            a study of another patient); the refusal is audited (outcome ``conflict``) before it is raised,
            on the filed study it collided with where there is one.
    """
    entry = audit_entry(actor, action=action)
    # Told which demographics differ from the record only if it may read the patient (else it would
    # learn them by trial).
    sender = scope_for(actor.principal)
    imaging = isinstance(data, ImagingResultIn)
    try:
        if isinstance(data, ImagingResultIn):
            stored = await db(ctx.record.results.save_imaging, data=data, audit=entry, sender=sender)
        else:
            stored = await db(ctx.record.results.save_triage, data=data, audit=entry, sender=sender)
    except Conflict as e:
        await audit(
            ctx,
            actor,
            action=action,
            outcome="conflict",
            resource_type="ImagingStudy" if imaging else "TriageResult",
            # The filed study it collided with (its facility's auditor reads the attempt on its trail);
            # else the StudyInstanceUID sent.
            resource_id=e.study_id
            or (data.study_instance_uid if isinstance(data, ImagingResultIn) else None),
        )
        logger.warning("a result was refused: it conflicts with the record", extra={"code": e.code})
        raise
    if stored.mismatched:
        # Field names only: the values are patient data and stay in the record and the sender's system.
        logger.warning(
            "the sender's demographics differ from the patient on file; the record kept its own",
            extra={
                "code": "identity_mismatch",
                "result_id": stored.result_id,
                "fields": list(stored.mismatched),
            },
        )
    return stored
