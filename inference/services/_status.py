"""Readiness and the list of served models."""

from __future__ import annotations

from typing import Any

from inference.services._context import Context, db


async def readiness(*, ctx: Context) -> dict[str, bool]:
    """Which dependencies answer: ``models`` (both loaded), ``database`` (a trivial query works) and,
    where bearer tokens are checked, ``revocations`` (the revoked tokens were read from the record at
    least once: until then every bearer token is refused with 503 ``revocations_unavailable``)."""
    checks = {"models": ctx.host.ready, "database": await db(ctx.record.ping)}
    if ctx.revocations is not None:
        checks["revocations"] = await ctx.revocations.read_once()
    return checks


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
