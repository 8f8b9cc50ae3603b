"""Observability of the server: Prometheus metrics of the HTTP layer and PHI-free JSON logs."""

from inference.observability._logging import SAFE_FIELDS, JsonFormatter, configure_logging
from inference.observability._metrics import (
    REJECTED_INPUTS,
    REQUEST_SECONDS,
    REQUESTS,
    UNMATCHED_ROUTE,
    count_rejected,
    exposition,
    observe_request,
)
from inference.observability._phi_guard import (
    PhiRedactor,
    QuietThirdParty,
    install_process_guard,
    install_warning_guard,
)

__all__ = [
    "REJECTED_INPUTS",
    "REQUESTS",
    "REQUEST_SECONDS",
    "SAFE_FIELDS",
    "UNMATCHED_ROUTE",
    "JsonFormatter",
    "PhiRedactor",
    "QuietThirdParty",
    "configure_logging",
    "count_rejected",
    "exposition",
    "install_process_guard",
    "install_warning_guard",
    "observe_request",
]
