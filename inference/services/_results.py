"""Reading results and the worklist; writing reader feedback. Every access is audited."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inference.explain import choose_language
from inference.record import AnyResult, Verdict, WorklistItem
from inference.security import Role, scope_for
from inference.services._access import (
    UNSEEN_RESULT,
    audit_entry,
    served,
    unseen,
    written,
)
from inference.services._context import Actor, Context, db
from inference.services._deliveries import with_build_warning

_UNSEEN_STUDY = unseen("imaging result of this study", none="the study has none yet (send it first)")


@dataclass(frozen=True, slots=True)
class ResultView:
    """A result as one caller reads it: the typed result and the language its rationale is shown in."""

    result: AnyResult
    language: str


@dataclass(frozen=True, slots=True)
class FeedbackReceipt:
    """How many verdicts were stored on a result."""

    result_id: str
    recorded: int


async def get_result(
    *, ctx: Context, actor: Actor, result_id: str, accept_language: str | None
) -> ResultView:
    """One result, imaging or triage, with the rationale in the caller's language.

    An imaging result carries ``deliveries``: the state of each of its DICOM outputs per destination.

    Raises:
        NotFound: No result has this id, or none that the caller may read (one answer).
    """
    result = served(
        actor,
        await db(
            ctx.record.results.read,
            result_id=result_id,
            scope=scope_for(actor.principal),
            audit=audit_entry(actor, action="results:read"),
            deliveries=True,
        ),
        missing=UNSEEN_RESULT,
    )
    return ResultView(with_build_warning(result), choose_language(accept_language))


async def get_study_result(
    *, ctx: Context, actor: Actor, study_instance_uid: str, accept_language: str | None
) -> ResultView:
    """The newest imaging result of a study.

    Raises:
        NotFound: The study has no result yet, or none that the caller may read (one answer).
    """
    result = served(
        actor,
        await db(
            ctx.record.results.read_latest_for_study,
            study_instance_uid=study_instance_uid,
            scope=scope_for(actor.principal),
            audit=audit_entry(actor, action="results:read"),
            deliveries=True,
        ),
        missing=_UNSEEN_STUDY,
        hidden=_UNSEEN_STUDY,
    )
    return ResultView(with_build_warning(result), choose_language(accept_language))


async def get_worklist(*, ctx: Context, actor: Actor, limit: int, offset: int) -> list[WorklistItem]:
    """Open results, most urgent first, then oldest first.

    A facility-bound token sees the results its facility owns (the facility's work queue; other
    facilities' results are read one by one, under the access rules). A token without a facility sees
    what the access table lets it read. Every patient listed is written to the audit trail.
    """
    principal = actor.principal
    # Read and audited in one transaction: one entry per patient listed.
    return await db(
        ctx.record.results.read_worklist,
        scope=scope_for(principal),
        audit=audit_entry(actor, action="worklist:read"),
        limit=limit,
        offset=offset,
        facility=None if principal.role == Role.ADMIN else principal.facility,
    )


async def submit_feedback(
    *, ctx: Context, actor: Actor, result_id: str, verdicts: Sequence[Verdict]
) -> FeedbackReceipt:
    """Store a reader's verdicts on a result (the reader is the token's subject) and close it.

    Only the result's own facility (or an admin) gives feedback: another facility reading the result
    under sharing consent or break-the-glass is refused.

    Raises:
        NotFound: No result has this id, or none that the caller may read (one answer).
        Forbidden: The result belongs to another facility, and the caller reads it (audited).
        InvalidFeedback: A verdict names a finding the result does not have.
        RecordError: The audit entry could not be written; nothing was stored.
    """
    # The check, the verdicts, the closing and their entry in one transaction (as the pages' verdicts): a
    # consent withdrawn or a grant ended meanwhile is wholly before or wholly after them; an entry refused
    # leaves nothing stored and the result open.
    written(
        actor,
        await db(
            ctx.record.feedback.save_checked, result_id=result_id, reader=actor.principal.subject,
            verdicts=verdicts, close=True, scope=scope_for(actor.principal),
            audit=audit_entry(actor, action="feedback:write"),
        ),
    )  # fmt: skip
    return FeedbackReceipt(result_id=result_id, recorded=len(verdicts))
