"""The audit trail for auditors (FHIR AuditEvent reads and searches) and model changes written into it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from inference.record import DENIED, NotFound, RecordError
from inference.record.fhir import audit_events
from inference.runtime import ModelHost
from inference.security import Role, scope_for
from inference.services._access import audit_entry
from inference.services._context import Actor, Context, db
from inference.services._imaging import model_ref

if TYPE_CHECKING:
    from inference.record import Record
    from inference.runtime import ServedModel

logger = logging.getLogger(__name__)

_ACTION = "audit:read"
# One answer to an id no entry has and to one outside the caller's part of the trail (see audit_event_read).
_UNSEEN_EVENT = (
    "No AuditEvent with this id is open to you: none exists, or it is about another facility's staff "
    "and patients (an auditor bound to a facility reads the entries of its own staff and of the "
    "patients it holds)."
)
SYSTEM_SUBJECT = "dxassist-model-host"
SYSTEM_ROLE = "system"


async def audit_event_search(
    *, ctx: Context, actor: Actor, params: Sequence[tuple[str, str]], base_url: str, strict: bool = False
) -> dict[str, Any]:
    """A searchset Bundle of AuditEvents (``date``, ``patient``, ``agent``, ``_id``, ``_count``, ``_offset``).

    The search itself is audited (an auditor's reads are accesses too), before the answer is built.

    Raises:
        InvalidSearch: An unsupported parameter or a malformed value.
    """
    filters = audit_events.filters(params, strict=strict)
    named = filters.get("patient_id")
    # Not a patient id (a UUID): it names no patient, so it matches nothing, as an unknown id does.
    matches = named is None or _is_patient_id(named)
    # Every patient the page names is disclosed to the auditor: one entry each (one when none), written in
    # the transaction that reads the page.
    total, entries, timestamp = await db(
        ctx.record.audit.search_audited,
        scope=scope_for(actor.principal),
        audit=audit_entry(actor, action=_ACTION),
        named=named if matches else None,
        matches=matches,
        **filters,
        facility=_facility_scope(actor),
    )
    return audit_events.bundle(
        total,
        entries,
        params,
        base_url,
        offset=int(filters.get("offset", 0)),
        count=int(filters["limit"]),
        timestamp=timestamp,
    )


def _is_patient_id(value: str) -> bool:
    """Whether ``value`` has the form of the record's patient ids (a UUID in its 36-character form)."""
    try:
        return len(value) == 36 and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


async def audit_event_read(*, ctx: Context, actor: Actor, event_id: str) -> dict[str, Any]:
    """One AuditEvent by id (the entry's sequence number).

    An entry outside the caller's part of the trail is answered as one that does not exist (the same
    404, the same words), so that an auditor bound to a facility cannot tell which ids of other
    facilities' entries exist; the trail says which it was (``denied`` or ``not_found``).

    Raises:
        NotFound: No entry has this id, or none the caller may read.
    """
    seq = int(event_id) if event_id.isascii() and event_id.isdigit() and len(event_id) <= 18 else -1
    found = await db(
        ctx.record.audit.read_audited,
        seq=seq,
        facility=_facility_scope(actor),
        audit=audit_entry(actor, action=_ACTION),
        resource_id=event_id,
    )
    if found.outcome == DENIED or found.value is None:
        raise NotFound(_UNSEEN_EVENT)
    return audit_events.audit_event(found.value)


def _facility_scope(actor: Actor) -> str | None:
    """The facility an auditor's reads are limited to (None: the whole trail, for admin and national
    auditors): entries of its own staff and every entry about its own data (results, studies, patients it
    filed first, grants opened on its results)."""
    principal = actor.principal
    return None if principal.role == Role.ADMIN else principal.facility


def record_model_change(record: Record, model: ServedModel) -> None:
    """Write a model put into service (at start or by a hot swap) to the audit trail.

    Raises:
        RecordError: The event could not be written.
    """
    record.audit.append(
        subject=SYSTEM_SUBJECT,
        role=SYSTEM_ROLE,
        facility=None,
        action="model:change",
        resource_type="Model",
        resource_id=f"{model.name}@{model.version}"[:128],
        patient_id=None,
        outcome="success",
        client=None,
    )


class AuditedModelHost(ModelHost):
    """A :class:`~inference.runtime.ModelHost` writing every model it puts into service to the audit trail.

    Args:
        *args: As for :class:`~inference.runtime.ModelHost`.
        record: The patient record holding the audit trail.
        **kwargs: As for :class:`~inference.runtime.ModelHost`.
    """

    def __init__(self, *args: Any, record: Record, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._record = record

    async def refresh(self) -> list[ServedModel]:
        """Swap in new versions (see :meth:`ModelHost.refresh`), then audit each one swapped in and
        complete its Device with what its file says it was trained on, where the record lacks it
        (``Record.devices.in_service``: the Device's next version, kept once the version leaves service)."""
        swapped = await super().refresh()
        for model in swapped:
            try:
                await db(record_model_change, self._record, model)
            except RecordError:
                # The swap has happened; the failure is loud so an operator restores the trail.
                logger.error(
                    "a model change could not be written to the audit trail",
                    extra={"code": "audit_write_failed", "model": model.name, "model_version": model.version},
                )
            try:
                await db(self._record.devices.in_service, model=model_ref(model))
            except RecordError:
                # The Device says what it said; the next start or swap of this version completes it.
                logger.error(
                    "the Device of a model put into service could not be completed",
                    extra={
                        "code": "device_write_failed",
                        "model": model.name,
                        "model_version": model.version,
                    },
                )
        return swapped
