"""A read of patient data is audited in its own transaction (``inference.record._reads``): the services and
the record offer no step that audits a read apart from the data it disclosed.

``audit_disclosed`` (with ``under_grant``, and the record's ``patients.under_grant`` and
``patients.glass_only`` it read the grounds with) wrote the entries of a several-patient read in
transactions of their own, after the rows were read: a consent withdrawn in between was chained before the
read's entries, and the rows left the record before any entry could be refused. Every listing now reads
through ``read_listing``; a future read finds no such step to reach for.
"""

from __future__ import annotations

import inference.services
from inference.record._patients import Patients
from inference.services import _access


def test_no_service_audits_a_read_apart_from_its_data() -> None:
    apart = {"audit_disclosed", "under_grant", "Disclosed"}
    assert not apart & set(inference.services.__all__)
    assert not [name for name in apart if hasattr(inference.services, name) or hasattr(_access, name)]
    assert not [name for name in ("under_grant", "glass_only") if hasattr(Patients, name)]
