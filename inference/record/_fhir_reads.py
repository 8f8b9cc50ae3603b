"""FHIR R4 reads of the record, authorised and audited in the read's own transaction (``_reads``).

Beside :class:`inference.record._fhir_views.FhirViews` (the views themselves, unaudited): the same
resources, read through :func:`inference.record._reads.read_audited`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Final

from sqlalchemy.orm import Session

from inference.record import _audit, _scope
from inference.record._database import Database
from inference.record._inputs import AuditIn
from inference.record._reads import (
    BREAK_GLASS,
    DENIED,
    NOT_FOUND,
    SUCCESS,
    Audited,
    Disclosure,
    Target,
    audited_transaction,
    grounds_of,
    read_audited,
    read_listing,
)
from inference.record._types import utcnow
from inference.record.fhir import SEARCH_PARAMS, _everything, _search, subject_as_patient, version_of


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

        return read_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type=resource_type,
            resource_id=resource_id,
            locate=partial(_locate, resource_type, resource_id),
            fetch=lambda session, _target: _search.read(session, resource_type, resource_id),
        )

    def vread(
        self, *, resource_type: str, resource_id: str, version_id: str, scope: _scope.Scope, audit: AuditIn
    ) -> tuple[Audited[dict[str, Any]], str | None]:
        """One version of a resource (FHIR ``vread``), checked, read and audited as :meth:`read` is, in one
        transaction. The record keeps the current version only: another ``version_id`` is audited
        ``not_found`` (naming the patient, as a read of what is not there), and its current version is
        returned beside, so the caller can say which one is kept (only to a caller that may read it).

        Returns:
            The audited read (the resource only when ``version_id`` is current), and the current version
            when the caller may read the resource but asked for another one (else None).

        Raises:
            RecordError: The record failed or the audit entry could not be written; nothing is served.
        """
        current: list[str] = []

        def fetch(session: Session, _target: Target) -> dict[str, Any] | None:
            resource = _search.read(session, resource_type, resource_id)
            if resource is None or version_of(resource) == version_id:
                return resource
            current.append(version_of(resource))
            return None

        found = read_audited(
            self._db,
            scope=scope,
            audit=audit,
            resource_type=resource_type,
            resource_id=resource_id,
            locate=partial(_locate, resource_type, resource_id),
            fetch=fetch,
        )
        return found, (current[0] if current else None)

    def search(
        self,
        *,
        resource_type: str,
        params: Mapping[str, str] | Sequence[tuple[str, str]],
        base_url: str,
        scope: _scope.Scope,
        audit: AuditIn,
        strict: bool = False,
    ) -> dict[str, Any]:
        """A ``searchset`` Bundle of what the caller may read (the scope is part of the query), audited in
        the same transaction (``read_listing``): one entry per patient the page discloses (``break_glass``
        where a grant is the only ground of one of its rows); a page that lists nothing of a search scoped
        to one existing patient (``patient=``, ``subject=``, or ``_id=`` of a Patient search) under that
        patient; a Patient search whose page lists none of the patients its total counts under those
        patients (the first :data:`COUNTED_MAX`); one entry without a patient when it disclosed nobody.

        Raises:
            InvalidSearch: An unsupported parameter when ``strict``, a malformed value (nothing audited).
            RecordError: The record failed or the entries could not be written; nothing is served.
        """
        return read_listing(
            self._db,
            scope=scope,
            audit=audit,
            resource_type=resource_type,
            fetch=lambda session: _search.search(
                session, resource_type, params, base_url, scope, strict=strict
            ),
            disclosed=lambda session, bundle: _disclosure(
                session, resource_type, params, base_url, scope, bundle
            ),
        )

    def everything(
        self,
        *,
        patient_id: str,
        params: Mapping[str, str] | Sequence[tuple[str, str]],
        base_url: str,
        scope: _scope.Scope,
        audit: AuditIn,
        strict: bool = False,
    ) -> Audited[dict[str, Any]]:
        """Patient ``$everything`` for a caller (one page, see ``FhirViews.everything``), audited in the
        same transaction: ``not_found`` (an unknown patient) or ``denied`` (the caller may read nothing
        of it) on the Patient; else, per resource type the page discloses, one entry naming the type and
        the patient and no resource (``break_glass`` where a grant is the only ground of one of its
        rows), or one on the Patient when the page lists nothing.

        Raises:
            InvalidSearch: An unsupported parameter when ``strict``, a repeated one, a malformed value, a
                ``_type`` outside the patient's record (nothing audited).
            RecordError: The record failed or the entries could not be written; nothing is served.
        """
        with audited_transaction(self._db) as (session, head):
            # Before the first query: the Bundle's timestamp, then the snapshot its pages list.
            timestamp = _search.read_from(session)
            now = utcnow()
            refused: tuple[str, str | None] | None = None
            if _search.owner_of(session, "Patient", patient_id) is None:
                refused = (NOT_FOUND, None)
            elif not _everything.reachable(session, patient_id, scope):
                refused = (DENIED, patient_id)
            if refused is not None:
                outcome, named = refused
                entry = _audit.columns_of(
                    audit,
                    resource_type="Patient",
                    resource_id=patient_id,
                    patient_id=named,
                    outcome=outcome,
                )
                _audit.append_onto(session, head, **entry)
                return Audited(outcome=outcome, value=None, patient_id=named, resource_id=patient_id)
            bundle = _everything.everything(
                session, patient_id, params, base_url, scope, strict=strict, now=now, timestamp=timestamp
            )
            _audit.append_all_onto(
                session, head, _everything_entries(session, scope, audit, patient_id, bundle)
            )
        return Audited(outcome=SUCCESS, value=bundle, patient_id=patient_id, resource_id=patient_id)


def _locate(resource_type: str, resource_id: str, session: Session) -> Target | None:
    """The patient and owner of a resource a read or a vread asks for; None when there is none."""
    found = _search.owner_of(session, resource_type, resource_id)
    if found is None:
        return None
    patient_id, owner, patient_level = found
    return Target(patient_id=patient_id, owner=owner, patient_level=patient_level)


def _everything_entries(
    session: Session, scope: _scope.Scope, audit: AuditIn, patient_id: str, bundle: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The entries of one ``$everything`` page (see :meth:`FhirReads.everything`)."""
    disclosed: dict[str, list[str]] = {}  # type -> resource ids on this page
    for item in bundle.get("entry", []):
        if item["search"]["mode"] == "include":  # a Device the page references: about no patient
            continue
        resource = item["resource"]
        disclosed.setdefault(str(resource["resourceType"]), []).append(str(resource["id"]))
    granted = bool(_scope.granted(session, scope, [patient_id]))
    now = utcnow()

    def entry(resource_type: str, rows: Sequence[Target]) -> dict[str, Any]:
        glass = patient_id in grounds_of(session, scope, rows) if granted else False
        return _audit.columns_of(
            audit,
            resource_type=resource_type,
            resource_id=None,
            patient_id=patient_id,
            outcome=BREAK_GLASS if glass else SUCCESS,
            time=now,
        )

    if not disclosed:
        # An empty page still tells the caller about this patient (its total; that nothing matched).
        return [entry("Patient", [Target(patient_id, None, patient_level=True)])]
    entries = []
    for resource_type, ids in disclosed.items():
        owners = [_search.owner_of(session, resource_type, rid) for rid in ids] if granted else []
        rows = [Target(o[0], o[1], patient_level=o[2]) for o in owners if o is not None and o[0] is not None]
        entries.append(entry(resource_type, rows))
    return entries


COUNTED_MAX: Final = 500
"""Most patients a count-only Patient search names on the trail (the search's largest page)."""


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """The id of the Patient a resource is about (itself for a Patient), or None."""
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id"))
    for key in ("subject", "patient"):
        reference = resource.get(key)
        if isinstance(reference, Mapping):
            ref = str(reference.get("reference", ""))
            if ref.startswith("Patient/"):
                return ref.removeprefix("Patient/")
    return None


def _disclosure(
    session: Session,
    resource_type: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    base_url: str,
    scope: _scope.Scope,
    bundle: Mapping[str, Any],
) -> Disclosure:
    """Whom a search's page discloses (see :meth:`FhirReads.search`)."""
    disclosed: list[tuple[str, str]] = []  # (resource id, patient id) of each entry about a patient
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        patient: str | None
        if resource_type == "Provenance":
            # Provenance names its patient only through its targets: ask the record.
            found = _search.owner_of(session, "Provenance", str(resource["id"]))
            patient = None if found is None else found[0]
        else:
            patient = patient_of(resource)
        if patient:
            disclosed.append((str(resource.get("id")), patient))
    if not disclosed:
        scoped_to = _searched_patient(session, resource_type, params, base_url)
        if scoped_to is not None:
            # A page that lists nothing still tells the caller about the one patient searched (its total;
            # that nothing matched): under the patient, ``break_glass`` on a grant alone.
            return Disclosure(patients=[scoped_to], rows=[Target(scoped_to, None, patient_level=True)])
        if resource_type == "Patient" and int(bundle.get("total", 0)) > 0:
            disclosed = _counted_patients(session, params, base_url, scope)
            return Disclosure(patients=[patient for _resource_id, patient in disclosed])

    def rows(granted: set[str]) -> list[Target]:
        # The rows of the patients under the caller's grant, with their owners, so the entry says
        # ``break_glass`` where that is the ground it rests on.
        found = (_search.owner_of(session, resource_type, rid) for rid, p in disclosed if p in granted)
        return [Target(o[0], o[1], patient_level=o[2]) for o in found if o is not None and o[0] is not None]

    return Disclosure(patients=[patient for _resource_id, patient in disclosed], rows=rows)


def _searched_patient(
    session: Session,
    resource_type: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    base_url: str,
) -> str | None:
    """The existing patient a search is scoped to (``patient=`` of the types that take it, ``_id=`` of a
    Patient search), or None: a search about no one patient, or an id the record does not hold."""
    name = "_id" if resource_type == "Patient" else "patient"
    if name not in SEARCH_PARAMS[resource_type]:
        return None
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    if name == "patient":
        # ``subject=`` names the patient as ``patient=`` does (both given and different: nobody).
        named = {key: value for key, value in pairs if key in ("patient", "subject")}
        value = subject_as_patient(named, base_url).get("patient")
    else:
        value = next((value for key, value in pairs if key == name), None)
    if not value:
        return None
    patient_id = value.removeprefix("Patient/") if name == "patient" else value
    if _search.owner_of(session, "Patient", patient_id) is None:
        return None
    return patient_id


def _counted_patients(
    session: Session,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    base_url: str,
    scope: _scope.Scope,
) -> list[tuple[str, str]]:
    """``(resource id, patient id)`` of the patients a Patient search's total counts when its page lists
    none (``_count=0``, ``_summary=count``, a page past the end): "one patient named X born on D" tells
    the caller that patient is on file, so the trail names them (the first :data:`COUNTED_MAX`)."""
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    paging = ("_count", "_offset", "_summary")
    again = [(key, value) for key, value in pairs if key not in paging] + [("_count", str(COUNTED_MAX))]
    bundle = _search.search(session, "Patient", again, base_url, scope)
    ids = [str(entry.get("resource", {}).get("id")) for entry in bundle.get("entry", [])]
    return [(patient_id, patient_id) for patient_id in ids]
