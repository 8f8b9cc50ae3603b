"""One ``Settings`` in groups: the environment names and defaults operators rely on do not move."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from inference.config import LimitsSettings, Settings, setting_names

# Every setting's environment name (``DXASSIST_`` + flat name) and its group. docs/operations.md and
# the contract name these; a rename here is a breaking change for every deployment.
EXPECTED = {
    "": "environment home database_url mlflow_tracking_uri",
    "registry": "gate_min_shadow_studies gate_min_reader_verdicts",
    "logs": "log_level log_file log_max_bytes log_backups",
    "server": (
        "public_base_url tls_certfile tls_keyfile rate_limit_per_minute rate_limit_burst preprocess_workers"
    ),
    "runtime": (
        "execution_provider cuda_device_id intra_op_threads inter_op_threads batch_max_size "
        "batch_max_wait_ms model_watch_seconds drift_window drift_psi_alert drift_min_observations "
        "decode_threads allocator_keep_bytes shadow_queue_size shadow_quiet_ms shadow_metrics_seconds"
    ),
    "limits": (
        "max_request_bytes max_instance_bytes max_instances max_pixels max_json_bytes max_decode_bytes "
        "upload_memory_bytes"
    ),
    "record": "org_root site_policy facility_issuers default_issuer keep_training_inputs",
    "security": (
        "issuer audience token_ttl_seconds signing_key_passphrase jwks_url jwt_algorithm jwks_cache_seconds "
        "role_claim facility_claim"
    ),
    "ui": (
        "ui_session_idle_minutes ui_session_max_hours ui_lockout_attempts ui_lockout_minutes "
        "worklist_max_wait_minutes ui_refresh_seconds"
    ),
    "dimse": (
        "dimse_port dimse_allowed_aets dimse_nodes dimse_open_facility dimse_stable_seconds "
        "dimse_max_attempts dimse_retry_seconds dimse_spool dimse_grouping dimse_lease_seconds"
    ),
    "delivery": (
        "destinations delivery_backoff_seconds delivery_backoff_cap_seconds delivery_poll_seconds "
        "delivery_max_attempts build_max_attempts build_lease_seconds"
    ),
    "batch": "batch_facility batch_qido_page_size",
}


def test_every_setting_keeps_its_flat_name_in_one_group() -> None:
    names = setting_names()
    expected = {name: group for group, line in EXPECTED.items() for name in line.split()}
    # New settings may be added (then listed above and in docs/operations.md); none may vanish or move.
    missing = {name: group for name, group in expected.items() if names.get(name) != group}
    assert missing == {}


def test_each_group_reads_its_settings_from_the_flat_environment_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DXASSIST_HOME", str(tmp_path))
    monkeypatch.setenv("DXASSIST_MAX_PIXELS", "1234")
    monkeypatch.setenv("DXASSIST_BATCH_MAX_SIZE", "3")
    monkeypatch.setenv("DXASSIST_DIMSE_NODES", '[{"ae_title": "PACS", "facility": "F1"}]')
    monkeypatch.setenv("DXASSIST_DIMSE_OPEN_FACILITY", "F-OPEN")
    monkeypatch.setenv("DXASSIST_JWT_ALGORITHM", "RS256")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    settings = Settings()
    assert settings.home == tmp_path
    assert settings.limits.max_pixels == 1234
    assert settings.runtime.batch_max_size == 3
    assert settings.dimse.node_facility("PACS") == "F1"
    assert settings.dimse.node_facility("ANYONE") == "F-OPEN"
    assert settings.security.jwt_algorithm == "RS256"
    assert settings.tracking_uri == "sqlite:///elsewhere.db"


def test_defaults_are_those_of_the_documented_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in setting_names():
        monkeypatch.delenv(f"DXASSIST_{name.upper()}", raising=False)
    settings = Settings()
    assert settings.home == Path("var") and settings.environment == "development"
    assert settings.limits.max_pixels == 24 * 1024 * 1024
    assert settings.limits.max_request_bytes == 512 * 1024 * 1024
    assert settings.dimse.dimse_port == 11112 and settings.dimse.dimse_nodes == []
    assert settings.dimse.node_facility("ANYONE") is None  # no node registered: every AE refused
    assert settings.delivery.delivery_max_attempts == 120 and settings.delivery.destinations == []
    assert settings.security.issuer == "dxassist" and settings.security.audience == "dxassist-api"
    assert settings.runtime.execution_provider == "auto" and settings.runtime.batch_max_size == 8


def test_a_keyword_names_a_setting_or_a_group_and_the_rest_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DXASSIST_MAX_INSTANCES", "7")
    flat = Settings(max_pixels=10)
    assert (flat.limits.max_pixels, flat.limits.max_instances) == (10, 7)
    grouped = Settings(limits={"max_pixels": 11})
    assert (grouped.limits.max_pixels, grouped.limits.max_instances) == (11, 7)
    both = Settings(limits=LimitsSettings(max_pixels=12), max_instances=3)
    assert (both.limits.max_pixels, both.limits.max_instances) == (12, 3)


def test_an_unknown_or_invalid_setting_is_refused_with_its_name() -> None:
    with pytest.raises(ValidationError, match="'max_pixel' is not a dxassist setting"):
        Settings(max_pixel=10)
    with pytest.raises(ValidationError, match="max_pixels"):
        Settings(max_pixels=0)
    with pytest.raises(ValidationError, match="needs host, port and ae_title"):
        Settings(destinations=[{"name": "pacs", "kind": "dimse"}])


def test_a_group_is_not_set_through_an_environment_variable_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only the documented flat names configure the process: DXASSIST_LIMITS is nobody's variable.
    monkeypatch.setenv("DXASSIST_LIMITS", '{"max_pixels": 5}')
    monkeypatch.delenv("DXASSIST_MAX_PIXELS", raising=False)
    assert Settings().limits.max_pixels == 24 * 1024 * 1024


def test_production_still_refuses_the_embedded_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DXASSIST_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="DXASSIST_DATABASE_URL must be set in production"):
        Settings(environment="production")


def test_the_listener_spool_is_home_unless_set_and_a_relative_one_is_under_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DXASSIST_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DXASSIST_DIMSE_SPOOL", raising=False)
    monkeypatch.delenv("DXASSIST_DIMSE_GROUPING", raising=False)
    settings = Settings()
    assert settings.listener_spool == settings.resolved_home
    assert settings.dimse.dimse_grouping == "process"
    monkeypatch.setenv("DXASSIST_DIMSE_SPOOL", "spool")
    assert Settings().listener_spool == settings.resolved_home / "spool"
    monkeypatch.setenv("DXASSIST_DIMSE_SPOOL", str(tmp_path / "nfs"))
    monkeypatch.setenv("DXASSIST_DIMSE_GROUPING", "database")
    shared = Settings()
    assert shared.listener_spool == tmp_path / "nfs"
    assert shared.dimse.dimse_grouping == "database"
    monkeypatch.setenv("DXASSIST_DIMSE_GROUPING", "files")
    with pytest.raises(ValidationError):
        Settings()
