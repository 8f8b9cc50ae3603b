"""The FHIR R4 views of the record (resources, searches, the CapabilityStatement)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from inference.record import _scope
from inference.record._database import Database
from inference.record._types import utcnow
from inference.record.fhir import _capability, _everything, _search


class FhirViews:
    """FHIR R4 reads and searches over the record."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def read(self, *, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """One FHIR R4 resource as JSON, or ``None`` when absent or of a type not served.

        Not scoped: callers authorise with :meth:`owner` first (to answer 403 rather than 404).
        """
        with self._db.sessions() as session:
            return _search.read(session, resource_type, resource_id)

    def search(
        self,
        *,
        resource_type: str,
        params: Mapping[str, str] | Sequence[tuple[str, str]],
        base_url: str,
        scope: _scope.Scope | None = None,
        strict: bool = False,
    ) -> dict[str, Any]:
        """A FHIR ``searchset`` Bundle; ``base_url`` is the FHIR base (e.g. ``http://host/fhir``).

        With ``scope``, only what the caller may read is matched: in the query, so ``total`` and the
        pages count nothing else. Unsupported parameters are ignored unless ``strict``.

        Raises:
            InvalidSearch: unsupported type, an unsupported parameter when ``strict``, a malformed value.
        """
        with self._db.sessions() as session:
            return _search.search(session, resource_type, params, base_url, scope, strict=strict)

    def everything(
        self,
        *,
        patient_id: str,
        params: Mapping[str, str] | Sequence[tuple[str, str]],
        base_url: str,
        scope: _scope.Scope | None = None,
        strict: bool = False,
    ) -> dict[str, Any] | None:
        """Patient ``$everything``: the searchset Bundle of one page, in one session; None when the caller
        may read nothing of the patient at all (checked first: such a caller learns nothing of the
        parameters either, and is refused as a read of the Patient is). With ``scope``, only what the
        per-type searches would show the caller is matched (the same scoped queries).

        Raises:
            InvalidSearch: an unsupported parameter when ``strict``, a repeated one, a malformed value, a
                ``_type`` outside the patient's record.
        """
        with self._db.sessions() as session:
            # Before the first query: the Bundle's timestamp, then the snapshot its pages list.
            timestamp = _search.read_from(session)
            now = utcnow()
            if not _everything.reachable(session, patient_id, scope):
                return None
            return _everything.everything(
                session, patient_id, params, base_url, scope, strict=strict, now=now, timestamp=timestamp
            )

    def owner(self, *, resource_type: str, resource_id: str) -> tuple[str | None, str | None, bool] | None:
        """``(patient id, owning facility, patient-level)`` of a FHIR resource; None when absent.

        A Device has no patient; a Patient is patient-level (no owning facility: see ``_scope``).
        """
        with self._db.sessions() as session:
            return _search.owner_of(session, resource_type, resource_id)

    def owners(
        self, *, resource_type: str, resource_ids: Sequence[str]
    ) -> dict[str, tuple[str | None, str | None, bool]]:
        """:meth:`owner` of several resources of one type, in one session: ``{id: owner}`` of those found."""
        with self._db.sessions() as session:
            found = {rid: _search.owner_of(session, resource_type, rid) for rid in set(resource_ids)}
        return {rid: owner for rid, owner in found.items() if owner is not None}

    def capability_statement(self, *, base_url: str) -> dict[str, Any]:
        """The R4 CapabilityStatement of the FHIR views."""
        from inference import __version__

        return _capability.capability_statement(base_url, __version__)
