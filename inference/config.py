"""Process settings: environment first (``DXASSIST_`` prefix), embedded defaults under ``DXASSIST_HOME``."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything one dxassist process needs to know about its environment.

    All state lives under ``home``. ``database_url`` and ``mlflow_tracking_uri`` override the
    embedded SQLite defaults.
    """

    model_config = SettingsConfigDict(env_prefix="DXASSIST_", extra="ignore", frozen=False)

    environment: Literal["development", "production"] = "development"
    home: Path = Path("var")
    database_url: str | None = None
    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "DXASSIST_MLFLOW_TRACKING_URI")
    )

    # ONNX Runtime
    execution_provider: Literal["auto", "cpu", "cuda"] = "auto"
    cuda_device_id: int = Field(default=0, ge=0)
    intra_op_threads: int = Field(default=0, ge=0)
    inter_op_threads: int = Field(default=1, ge=0)
    batch_max_size: int = Field(default=8, ge=1, le=256)
    batch_max_wait_ms: float = Field(default=5.0, ge=0)
    model_watch_seconds: float = Field(default=30.0, ge=0)
    drift_window: int = Field(default=500, ge=10, le=100_000)
    """Imaging results per model version in the rolling drift window (``DXASSIST_DRIFT_WINDOW``)."""
    drift_psi_alert: float = Field(default=0.25, gt=0)
    """Population stability index at or above which a signal drifts (0.25: the usual "significant")."""
    drift_min_observations: int = Field(default=50, ge=1)
    """Results in the window before a drift alert can be raised."""
    shadow_queue_size: int = Field(default=64, ge=0, le=10_000)
    """Shadow-scoring jobs (challenger on live traffic) that may wait; more are dropped and counted.
    0 turns shadow scoring off (``DXASSIST_SHADOW_QUEUE_SIZE``)."""
    shadow_metrics_seconds: float = Field(default=10.0, ge=0)
    """Least interval between two recomputations of the champion/challenger comparison on ``/metrics``."""
    keep_training_inputs: bool = True
    """Keep each imaging result's de-identified model input for retraining, while consent allows it."""
    gate_min_shadow_studies: int = Field(default=0, ge=0)
    """Shadow-scored inputs the promotion gate requires before a challenger may become champion."""
    gate_min_reader_verdicts: int = Field(default=0, ge=0)
    """Readers' verdicts on shadow-scored inputs the promotion gate requires (``registry promote``)."""
    preprocess_workers: int = Field(default=2, ge=1)

    # Input limits (bad input gets a 4xx, never a crash)
    max_request_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    max_instance_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    max_instances: int = Field(default=64, ge=1)
    # 24 Mi pixels: above the largest CR/DX detector (43 x 43 cm at 0.1 mm, 4300 x 4300 = 18.5 M), and
    # what keeps the listener's analysis of one instance under 600 MB (docs/security.md, "Memory bounds").
    max_pixels: int = Field(default=24 * 1024 * 1024, ge=1)
    max_json_bytes: int = Field(default=64 * 1024, ge=256)
    # Bytes of DICOM files decoded at the same time in one process (docs/security.md, "Memory bounds").
    max_decode_bytes: int = Field(default=512 * 1024 * 1024, ge=1024 * 1024)

    # Identity of outputs and policy
    org_root: str = "1.2.826.0.1.3680043.10.1453"
    site_policy: Path | None = None
    issuer: str = "dxassist"
    audience: str = "dxassist-api"
    token_ttl_seconds: int = Field(default=3600, ge=60)
    signing_key_passphrase: SecretStr | None = None
    public_base_url: str | None = None
    """The server's address as its clients reach it (``https://dxassist.hospital.example``, behind a
    reverse proxy): the base of STOW-RS ``RetrieveURL`` and FHIR links. Unset: taken from each request."""

    @field_validator("public_base_url")
    @classmethod
    def _check_public_base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parsed = urlsplit(value.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.query or parsed.fragment:
            raise ValueError(
                "DXASSIST_PUBLIC_BASE_URL must be an http(s) URL without query or fragment, "
                "e.g. https://dxassist.hospital.example"
            )
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production" and self.database_url is None:
            raise ValueError(
                "DXASSIST_DATABASE_URL must be set in production; the embedded SQLite is for development."
            )
        return self

    @cached_property
    def resolved_home(self) -> Path:
        path = self.home.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def record_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_home / 'record.db'}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.resolved_home / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.resolved_home / "mlartifacts"

    @property
    def model_cache(self) -> Path:
        return self.resolved_home / "models"

    @property
    def keys_dir(self) -> Path:
        return self.resolved_home / "keys"

    @property
    def log_dir(self) -> Path:
        return self.resolved_home / "logs"

    # Security: external token issuer, rate limits, TLS (docs/security.md)
    jwks_url: str | None = None
    jwt_algorithm: Literal[
        "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"
    ] = "EdDSA"
    jwks_cache_seconds: int = Field(default=300, ge=0)
    role_claim: str = "role"
    facility_claim: str = "facility"
    rate_limit_per_minute: int = Field(default=1200, ge=0)
    rate_limit_burst: int = Field(default=300, ge=1)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None

    # Web pages (docs/ui.md): session clocks, sign-in lockout, the worklist's starvation guard
    ui_session_idle_minutes: int = Field(default=15, ge=1, le=24 * 60)
    ui_session_max_hours: float = Field(default=12.0, gt=0, le=7 * 24)
    ui_lockout_attempts: int = Field(default=5, ge=1, le=100)
    ui_lockout_minutes: int = Field(default=15, ge=1)
    worklist_max_wait_minutes: int = Field(default=240, ge=0)  # 0 turns the guard off
    ui_refresh_seconds: int = Field(default=30, ge=2, le=3600)

    # Patient identity (docs/security.md): the issuer a facility's senders mean when they name none
    facility_issuers: dict[str, str] = Field(default_factory=dict)
    default_issuer: str | None = None


def get_settings() -> Settings:
    """Read settings from the environment (a new object each call, so tests can change the environment)."""
    return Settings()
