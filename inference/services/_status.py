"""Readiness and the list of served models."""

from __future__ import annotations

from typing import Any, Final

from inference.services._context import Context, db

REPORTED_ONLY: Final = frozenset({"audit_anchor"})
"""Checks ``/readyz`` reports without answering 503 for them (see :func:`is_ready`)."""


async def readiness(*, ctx: Context) -> dict[str, bool]:
    """Which dependencies answer: ``models`` (both loaded), ``database`` (a trivial query works),
    where bearer tokens are checked, ``revocations`` (the revoked tokens were read from the record at
    least once: until then every bearer token is refused with 503 ``revocations_unavailable``) and, where
    the audit trail is anchored, ``audit_anchor`` (false while this process's last write of the audit
    head anchor failed: the anchor is behind the trail)."""
    checks = {"models": ctx.host.ready, "database": await db(ctx.record.ping)}
    if ctx.revocations is not None:
        checks["revocations"] = await ctx.revocations.read_once()
    if ctx.record.anchor is not None:
        checks["audit_anchor"] = ctx.record.anchor.current
    return checks


def is_ready(checks: dict[str, bool]) -> bool:
    """Whether the process takes traffic: every check true but those only reported.

    ``audit_anchor`` is reported, not required: the entries are committed to the record's hash chain
    either way, and the anchor is written again only after a later commit, so a server taken out of
    service for it would stay out after the disk was fixed."""
    return all(ok for name, ok in checks.items() if name not in REPORTED_ONLY)


def model_problems(*, ctx: Context) -> list[str]:
    """Why a served model's latest version was refused: model, version, the broken contract, what to run."""
    return ctx.host.problems()


def list_models(*, ctx: Context) -> dict[str, Any]:
    """The models in service: name, version, alias, sha256, execution provider, kind, and what each was
    trained on (``synthetic``, ``training_data``: the line its ONNX metadata carries, None if none), and
    the imaging model's out-of-distribution guard (``ood_guard``)."""
    return {
        "models": [
            {
                **m.describe(),
                "synthetic": m.synthetic,
                "training_data": m.training_data,
                "ood_guard": m.ood_guard,
            }
            for m in ctx.host.models()
        ]
    }
