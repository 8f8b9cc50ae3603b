"""Idempotent vital signs: the keys of a request and the result already filed under them.

A sender retrying a ``POST /v1/vitals`` (a timeout, a resent message) must not file a second result:

- with an ``Idempotency-Key`` header, the same key from the same sender returns the result filed first,
  provided the request is the same; the same key with other content is refused
  (:class:`~inference.record.IdempotencyKeyReused`);
- without one, an exact duplicate (same sender, same patient, same observation time, same values) is
  the same observation and returns the result filed first.

Keys are sha256 digests, so the UNIQUE indexes stay small and hold no patient data in clear.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inference.record._errors import IdempotencyKeyReused
from inference.record._inputs import PatientIn, TriageRequestKeys
from inference.record._models import Result
from inference.record._types import as_utc, iso


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def request_keys(
    *,
    sender: str,
    patient: PatientIn,
    observed_at: datetime | None,
    vitals: Mapping[str, Any],
    idempotency_key: str | None,
) -> TriageRequestKeys:
    """The keys of one vitals request.

    Args:
        sender: Who sends it (the authenticated subject and its facility).
        patient: The patient as sent (identifier and issuer identify them).
        observed_at: The observation time as sent (``None`` when the sender let the server use "now").
        vitals: The validated vital signs (numbers as floats), keyed by request field.
        idempotency_key: The ``Idempotency-Key`` header, if any.
    """
    content = json.dumps(
        {
            "patient": [patient.identifier, patient.issuer or ""],
            "observed_at": None if observed_at is None else iso(as_utc(observed_at)),
            "vitals": {name: vitals[name] for name in sorted(vitals)},
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return TriageRequestKeys(
        idempotency_key=None if idempotency_key is None else _digest("key", sender, idempotency_key),
        request_digest=_digest("request", content),
        observation_key=None if observed_at is None else _digest("observation", sender, content),
    )


def find_filed(session: Session, keys: TriageRequestKeys) -> Result | None:
    """The triage result already filed for this request, if any.

    Raises:
        IdempotencyKeyReused: The key was used before for a request with other content.
    """
    if keys.idempotency_key is not None:
        filed = session.scalars(select(Result).where(Result.idempotency_key == keys.idempotency_key)).first()
        if filed is not None:
            if filed.request_digest != keys.request_digest:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used by this sender for a request with other content; "
                    "nothing was filed. Use a new key for a new observation."
                )
            return filed
    if keys.observation_key is not None:
        return session.scalars(select(Result).where(Result.observation_key == keys.observation_key)).first()
    return None
