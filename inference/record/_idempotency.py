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
- a request without ``observed_at`` is observed when it arrives, so a resend arrives "later": the same
  patient and values from the same facility, received within :data:`RESEND_WINDOW` of a filed copy,
  are that reading. Past the window the server cannot tell a resend from a new, identical reading.

A token bound to no facility shares its readings with no other token. A reading is never matched across
facilities: each facility files and reads its own results.

Keys are sha256 digests, so the UNIQUE indexes stay small and hold no patient data in clear.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from inference.record._errors import IdempotencyKeyReused
from inference.record._inputs import PatientIn, TriageRequestKeys
from inference.record._models import Result, VitalsObservation
from inference.record._types import as_utc, iso

RESEND_WINDOW: Final = timedelta(minutes=5)
"""How long after a reading sent without ``observed_at`` the same values from the same facility for the
same patient are taken for its resend. A device's retries after a lost answer come within seconds to a
minute or two; repeated observations of a patient are charted minutes apart at the closest, and a copy
with every value equal adds nothing to the worklist or the trend."""


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def request_keys(
    *,
    subject: str,
    facility: str | None,
    patient: PatientIn,
    observed_at: datetime | None,
    received_at: datetime,
    vitals: Mapping[str, Any],
    idempotency_key: str | None,
) -> TriageRequestKeys:
    """The keys of one vitals request.

    Args:
        subject: Who sends it (the authenticated subject).
        facility: The sender's facility (``None``: bound to none).
        patient: The patient as sent (identifier and issuer identify them).
        observed_at: The observation time as sent (``None`` when the sender let the server use "now").
        received_at: When the server received it: the observation time of a request without one.
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
    if observed_at is not None:
        observation = _digest("reading", owner, content)
        # Versions before readings were keyed by facility stored the sending token's key.
        earlier: tuple[str, ...] = (_digest("observation", sender, content),)
        between = None
    else:
        # Windows of RESEND_WINDOW: a copy received within RESEND_WINDOW of this one (before it, or just
        # after it when requests overtake each other) was stored under this window's key or a neighbour's;
        # ``observed_between`` keeps only those within it. Two copies arriving together share a key, so
        # the UNIQUE index files one.
        window = int(as_utc(received_at).timestamp() // RESEND_WINDOW.total_seconds())
        observation = _digest("untimed", owner, content, str(window))
        earlier = tuple(_digest("untimed", owner, content, str(w)) for w in (window - 1, window + 1))
        between = (as_utc(received_at) - RESEND_WINDOW, as_utc(received_at) + RESEND_WINDOW)
    return TriageRequestKeys(
        idempotency_key=None if idempotency_key is None else _digest("key", sender, idempotency_key),
        request_digest=_digest("request", content),
        observation_key=observation,
        earlier_keys=earlier,
        observed_between=between,
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
    if keys.observed_between is not None:
        since, until = keys.observed_between
        query = query.join(VitalsObservation, VitalsObservation.id == Result.vitals_id).where(
            VitalsObservation.observed_at >= since, VitalsObservation.observed_at <= until
        )
    return session.scalars(query.order_by(Result.created_at, Result.id)).first()
