"""Observability of the server: Prometheus metrics of the HTTP layer and PHI-free JSON logs."""

from inference.observability._logging import (
    SAFE_FIELDS,
    JsonFormatter,
    RequestIdFilter,
    bind_request_id,
    configure_logging,
    correlated,
    current_request_id,
    new_correlation_id,
    reset_request_id,
)
from inference.observability._metrics import (
    DEAD_LETTERED,
    REJECTED_INPUTS,
    REQUEST_SECONDS,
    REQUESTS,
    RETRIES,
    UNMATCHED_ROUTE,
    count_dead_lettered,
    count_rejected,
    count_retry,
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
    "DEAD_LETTERED",
    "RETRIES",
    "count_dead_lettered",
    "count_retry",
    "REJECTED_INPUTS",
    "REQUESTS",
    "REQUEST_SECONDS",
    "SAFE_FIELDS",
    "UNMATCHED_ROUTE",
    "JsonFormatter",
    "RequestIdFilter",
    "bind_request_id",
    "correlated",
    "current_request_id",
    "new_correlation_id",
    "reset_request_id",
    "PhiRedactor",
    "QuietThirdParty",
    "configure_logging",
    "count_rejected",
    "exposition",
    "install_process_guard",
    "install_warning_guard",
    "observe_request",
]
