"""Errors raised by the model registry and the local model cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model_registry._types import GateDecision


class RegistryError(Exception):
    """Root of every error raised by :mod:`model_registry`."""


class RegistryUnreachable(RegistryError, ConnectionError):
    """The MLflow tracking store or server did not answer (connection, database or I/O failure)."""


class NotFound(RegistryError, LookupError):
    """A registered model, version or alias that was asked for does not exist."""


class ModelUnavailable(RegistryError):
    """No usable model: the registry cannot provide it and the local cache holds none."""


class IntegrityError(RegistryError):
    """A model file's sha256 differs from the one recorded when it was registered."""


class PromotionRefused(RegistryError):
    """The promotion gate refused to move ``champion`` to a version.

    Attributes:
        reason: Full-sentence explanation naming the failing check or figure.
        decision: The gate's complete decision, comparisons included.
    """

    def __init__(self, reason: str, decision: GateDecision | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.decision = decision
