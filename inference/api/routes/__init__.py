"""Route modules: each declares an ``APIRouter`` named ``router``; :func:`all_routers` lists them."""

from fastapi import APIRouter

from inference.api.routes import (
    break_glass,
    consent,
    dicomweb,
    fhir,
    health,
    models,
    results,
    studies,
    vitals,
    worklist,
)


def all_routers() -> list[APIRouter]:
    """The routers in the order they are mounted (``/fhir/metadata`` before ``/fhir/{type}``)."""
    return [
        health.router,
        models.router,
        studies.router,
        dicomweb.router,
        vitals.router,
        results.router,
        worklist.router,
        consent.router,
        break_glass.router,
        fhir.router,
    ]


__all__ = ["all_routers"]
