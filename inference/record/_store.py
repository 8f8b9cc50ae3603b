"""``Record``: the patient record, one small class per concern over one session factory."""

from __future__ import annotations

from inference.record._anchor import HeadAnchor
from inference.record._audit_log import AuditLog
from inference.record._builds import Builds
from inference.record._consents import Consents
from inference.record._database import Database
from inference.record._devices import Devices
from inference.record._dimse_studies import StudyClaims
from inference.record._feedback import FeedbackLog
from inference.record._fhir_reads import FhirReads
from inference.record._fhir_views import FhirViews
from inference.record._glass import BreakGlass
from inference.record._outbox import Outbox
from inference.record._patients import Patients
from inference.record._priors import PriorReads
from inference.record._results import Results
from inference.record._revocations import TokenRevocations


class Record:
    """The patient record behind the API, composed of its concerns (all sharing one session factory).

    Args:
        url: SQLAlchemy URL: ``sqlite:///path/record.db`` or ``postgresql+psycopg://user@host/db``.
        anchor: Where the newest audit head is anchored outside the database (see ``_anchor``).

    Attributes:
        results: Imaging and triage results, the worklist (filed one transaction each with their audit
            entry and pending output build).
        priors: The viewer's read of a result with the patient's prior studies, audited as one.
        patients: Patient lookups for authorisation and registration.
        feedback: Readers' verdicts.
        audit: The hash-chained audit trail.
        consent: Patients' consent.
        break_glass: Emergency access grants.
        outbox: DICOM objects waiting for their destinations.
        builds: Results whose DICOM outputs are not built yet.
        dimse_studies: Received DIMSE studies shared by listener instances (grouping state, claims).
        devices: The Devices (model versions), completed when their version is put into service.
        fhir: The FHIR R4 views.
        fhir_reads: FHIR reads for a caller, authorised and audited in the read's transaction.
        tokens: Revoked bearer tokens.

    Every method of a concern takes keyword arguments only.
    """

    def __init__(self, url: str, *, anchor: HeadAnchor | None = None) -> None:
        self.db = Database(url, anchor=anchor)
        self.engine = self.db.engine
        self.sessions = self.db.sessions
        self.anchor = anchor
        self.results = Results(self.db)
        self.priors = PriorReads(self.db, self.results)
        self.patients = Patients(self.db)
        self.feedback = FeedbackLog(self.db)
        self.audit = AuditLog(self.db)
        self.consent = Consents(self.db)
        self.break_glass = BreakGlass(self.db)
        self.outbox = Outbox(self.db)
        self.builds = Builds(self.db)
        self.dimse_studies = StudyClaims(self.db)
        self.devices = Devices(self.db)
        self.fhir = FhirViews(self.db)
        self.fhir_reads = FhirReads(self.db)
        self.tokens = TokenRevocations(self.db)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (``alembic upgrade head``); safe to run every start."""
        self.db.migrate()

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        return self.db.ping()

    def close(self) -> None:
        """Close every pooled connection."""
        self.db.close()
