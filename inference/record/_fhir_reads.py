"""FHIR R4 reads of the record, authorised and audited in the read's own transaction (``_reads``).

Beside :class:`inference.record._fhir_views.FhirViews` (the views themselves, unaudited): the same
resources, read through :func:`inference.record._reads.read_audited`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from inference.record import _scope
from inference.record._database import Database
from inference.record._inputs import AuditIn
from inference.record._reads import Audited, Target, read_audited
from inference.record.fhir import _search


class FhirReads:
    """FHIR reads for a caller, each checked, read and audited in one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def read(
        self, *, resource_type: str, resource_id: str, scope: _scope.Scope, audit: AuditIn
    ) -> Audited[dict[str, Any]]:
        """One resource by type and id, if the caller may read it, with the access audited in the same
        transaction: ``not_found`` (an unknown id), ``denied``, or ``success`` / ``break_glass`` with the
        resource (a Device, about no patient, is read by anyone who reads FHIR).

        Raises:
            RecordError: The record failed or the audit entry could not be written; nothing is served.
        """

        def locate(session: Session) -> Target | None:
            found = _search.owner_of(session, resource_type, resource_id)
            if found is None:
                return None
            patient_id, owner, patient_level = found
            return Target(patient_id=patient_id, owner=owner, patient_level=patient_level)

        return read_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type=resource_type,
            resource_id=resource_id,
            locate=locate,
            fetch=lambda session, _target: _search.read(session, resource_type, resource_id),
        )
