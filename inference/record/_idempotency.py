"""Idempotent vital signs: the keys of a request and the result already filed under them.

A reading sent twice (a timeout and a retry, a resent message, a monitor's gateway and a nurse's app of
one ward sending the same reading) must file one result, one line on the worklist:

- with an ``Idempotency-Key`` header, the same key from the same sender returns the result filed first,
  provided the request is the same; the same key with other content is refused
  (:class:`~inference.record.IdempotencyKeyReused`);
- a reading is the patient's vital signs as measured at one time: the same patient (identifier and
  issuer), the same ``observed_at`` instant and the same values, sent by anyone of the same facility, is
  the same reading and returns the result filed first. Another time or another value is another
  reading, a correction included: it is filed, never answered with the earlier values;
- a request without ``observed_at`` is observed when it arrives: the server cannot tell its resend
  from a new reading of the same values a moment later (both are filed). A sender that retries sends
  ``observed_at`` or an ``Idempotency-Key``.

A token bound to no facility shares its readings with no other token. A reading is never matched across
facilities: each facility files and reads its own results.

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
    subject: str,
    facility: str | None,
    patient: PatientIn,
    observed_at: datetime | None,
    vitals: Mapping[str, Any],
    idempotency_key: str | None,
) -> TriageRequestKeys:
    """The keys of one vitals request.

    Args:
        subject: Who sends it (the authenticated subject).
        facility: The sender's facility (``None``: bound to none).
        patient: The patient as sent (identifier and issuer identify them).
        observed_at: The observation time as sent (``None`` when the sender let the server use "now":
            such a request is never taken for another's copy).
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
    sender = f"{subject}\x1f{facility or ''}"
    # Whoever of a facility sends a reading; a token bound to no facility owns nothing, so only its own.
    owner = f"facility\x1f{facility}" if facility else f"subject\x1f{subject}"
    observation: str | None = None
    earlier: tuple[str, ...] = ()
    if observed_at is not None:
        observation = _digest("reading", owner, content)
        # Versions before readings were keyed by facility stored the sending token's key.
        earlier = (_digest("observation", sender, content),)
    return TriageRequestKeys(
        idempotency_key=None if idempotency_key is None else _digest("key", sender, idempotency_key),
        request_digest=_digest("request", content),
        observation_key=observation,
        earlier_keys=earlier,
    )


def find_filed(session: Session, keys: TriageRequestKeys) -> Result | None:
    """The triage result already filed for this request, if any (the first filed of the reading).

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
    if keys.observation_key is None:
        return None
    query = select(Result).where(Result.observation_key.in_([keys.observation_key, *keys.earlier_keys]))
    return session.scalars(query.order_by(Result.created_at, Result.id)).first()
