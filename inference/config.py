"""Process settings: environment first (``DXASSIST_`` prefix), embedded defaults under ``DXASSIST_HOME``.

One :class:`Settings` per process, in groups by concern (``settings.runtime``, ``settings.limits``,
``settings.dimse``, ...). The groups are the Python shape only: every setting keeps one flat name, the
same in the environment (``DXASSIST_MAX_PIXELS``) and as a keyword (``Settings(max_pixels=...)``), so no
two groups may hold a field of the same name.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

_AE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # AE VR: 16 printable characters, no backslash
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_GROUP_CONFIG = SettingsConfigDict(env_prefix="DXASSIST_", extra="ignore")


class Destination(BaseModel):
    """One place results go back to: a DICOM node (C-STORE) or a DICOMweb server (STOW-RS).

    Attributes:
        name: Label used in the outbox, the API (``deliveries``) and the metrics.
        kind: ``dimse`` or ``stowrs``.
        host: DIMSE: the PACS's host name or address.
        port: DIMSE: the PACS's DICOM port.
        ae_title: DIMSE: the PACS's (called) AE title.
        calling_ae_title: DIMSE: the AE title dxassist presents; the PACS must know it.
        url: STOW-RS: the DICOMweb base URL; objects are POSTed to ``{url}/studies``.
        username: STOW-RS: HTTP basic user (with ``password``).
        password: STOW-RS: HTTP basic password.
        token: STOW-RS: bearer token (instead of basic auth).
        timeout_seconds: Network timeout of one attempt.
        tls: DIMSE: associate over TLS (DICOM TLS, PS3.15 Annex B; TLS 1.2 or newer), the PACS's certificate
            verified against ``tls_cafile`` (else the system's authorities) and its host name. STOW-RS: the
            ``https://`` url decides.
        tls_cafile: DIMSE with ``tls``, or STOW-RS over ``https://``: certificates (PEM) the destination's
            certificate must chain to (a hospital's own authority), instead of the system's authorities.
        tls_certfile: dxassist's certificate (PEM), for a destination that requires one (same cases).
        tls_keyfile: The private key of ``tls_certfile`` (PEM, unencrypted).
    """

    model_config = {"frozen": True}

    name: str
    kind: Literal["dimse", "stowrs"]
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    ae_title: str | None = None
    calling_ae_title: str = "DXASSIST"
    url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    tls: bool = False
    tls_cafile: Path | None = None
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None

    @model_validator(mode="after")
    def _complete(self) -> Destination:
        if not _NAME.fullmatch(self.name):
            raise ValueError(
                f"Destination name {self.name[:64]!r} is not accepted; "
                "use 1 to 64 letters, digits, '_', '-', '.'."
            )
        if self.kind == "dimse":
            if not self.host or self.port is None or not self.ae_title:
                raise ValueError(f"DIMSE destination {self.name!r} needs host, port and ae_title.")
            for title in (self.ae_title, self.calling_ae_title):
                if not _AE.fullmatch(title) or not title.strip():
                    raise ValueError(
                        f"AE title {title!r} of destination {self.name!r} is not valid; "
                        "an AE title has 1 to 16 "
                        "printable characters without a backslash."
                    )
        elif not self.url or not self.url.startswith(("http://", "https://")):
            raise ValueError(f"STOW-RS destination {self.name!r} needs an http:// or https:// url.")
        files = any(f is not None for f in (self.tls_cafile, self.tls_certfile, self.tls_keyfile))
        if self.kind == "stowrs":
            if self.tls:
                raise ValueError(
                    f'"tls" of destination {self.name!r} is for DIMSE; STOW-RS uses TLS with an https:// url.'
                )
            if files and not str(self.url).startswith("https://"):
                raise ValueError(f"Destination {self.name!r} names TLS files for a url that is not https://.")
        elif not self.tls and files:
            raise ValueError(f'Destination {self.name!r} names TLS files without "tls": true.')
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError(f"tls_certfile and tls_keyfile of destination {self.name!r} go together.")
        return self


class DimseNode(BaseModel):
    """A DICOM node allowed to send to ``dxassist listen``, and the facility that owns what it sends.

    Attributes:
        ae_title: The node's (calling) AE title.
        facility: The facility its results belong to.
        host: When set, the node's address: an association from elsewhere with this AE title is refused.
        certificate_cn: When set (DICOM TLS with ``dimse_tls_cafile``), the name of the node's certificate:
            its subject's common name or one of its DNS subject alternative names. An association with this
            AE title presenting a certificate of another name is refused, so a node certified by the same
            authorities cannot send as another facility's node.
        certificate_sha256: When set (DICOM TLS with ``dimse_tls_cafile``), the SHA-256 fingerprint of the
            one certificate the node may present (64 hex digits, colons allowed, as ``openssl x509
            -fingerprint -sha256`` prints it). Another certificate, even one the same authorities signed
            with the same names, is refused (``tls_certificate_refused``): after a key rotation the old
            key, or a stolen one, no longer sends as this node.
    """

    model_config = {"frozen": True}

    ae_title: str
    facility: Annotated[str, Field(min_length=1, max_length=128)]
    host: str | None = None
    certificate_cn: Annotated[str | None, Field(min_length=1, max_length=255)] = None
    certificate_sha256: str | None = None

    @field_validator("certificate_sha256")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = value.replace(":", "").strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digits):
            raise ValueError(
                "certificate_sha256 of a DICOM node is the SHA-256 fingerprint of its certificate: 64 hex "
                "digits, colons allowed (openssl x509 -noout -fingerprint -sha256 -in node.pem)."
            )
        return digits

    @model_validator(mode="after")
    def _valid_title(self) -> DimseNode:
        if not _AE.fullmatch(self.ae_title) or not self.ae_title.strip():
            raise ValueError(
                f"AE title {self.ae_title[:16]!r} of a DICOM node is not valid; an AE title has 1 to 16 "
                "printable characters without a backslash."
            )
        return self


class ServerSettings(BaseSettings):
    """The HTTP server: its public address, TLS, rate limits, processes and threads (``settings.server``)."""

    model_config = _GROUP_CONFIG

    public_base_url: str | None = None
    """The server's address as its clients reach it (``https://dxassist.hospital.example``, behind a
    reverse proxy): the base of FHIR links. Unset: taken from each request."""
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    rate_limit_per_minute: int = Field(default=1200, ge=0)
    rate_limit_burst: int = Field(default=300, ge=1)
    preprocess_workers: int = Field(default=2, ge=1)
    http_read_timeout: float = Field(default=60.0, gt=0, le=3600)
    """Seconds a request head may take to arrive whole from its first byte, and a request body may go
    without a byte while the server waits for it (``DXASSIST_HTTP_READ_TIMEOUT``); then 408 and the
    connection is closed (nginx's ``client_header_timeout`` and ``client_body_timeout``)."""
    workers: int = Field(default=1, ge=1, le=64)
    """Server processes answering on the one port (``dxassist serve --workers``): each has its own
    models, threads and interpreter, so the CPU-bound analysis of concurrent studies uses more than one
    core; metrics and rate limits are shared between them."""

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


class RuntimeSettings(BaseSettings):
    """ONNX Runtime sessions, micro-batching, model hot swap and drift monitoring (``settings.runtime``)."""

    model_config = _GROUP_CONFIG

    execution_provider: Literal["auto", "cpu", "cuda"] = "auto"
    cuda_device_id: int = Field(default=0, ge=0)
    intra_op_threads: int = Field(default=0, ge=0)
    inter_op_threads: int = Field(default=1, ge=0)
    decode_threads: int = Field(default=0, ge=0, le=256)
    """Threads OpenJPEG decodes one JPEG 2000 image on (``DXASSIST_DECODE_THREADS``; 0: the usable cores)."""
    allocator_keep_bytes: int = Field(default=256 * 1024 * 1024, ge=0, le=2**31 - 1)
    """Freed memory the process keeps for reuse instead of handing it back to the system at once (glibc;
    ``DXASSIST_ALLOCATOR_KEEP_BYTES``; 0 leaves the C allocator as it is)."""
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
    shadow_quiet_ms: float = Field(default=150.0, ge=0, le=60_000)
    """Champion idle time (no scoring for this long) before a shadow job starts; under steady traffic the
    jobs wait, the queue fills and further jobs are dropped, so the challenger never slows the champion."""
    shadow_metrics_seconds: float = Field(default=10.0, ge=0)
    """Least interval between two recomputations of the champion/challenger comparison on ``/metrics``."""


class LimitsSettings(BaseSettings):
    """Input limits: bad input gets a 4xx, never a crash (``settings.limits``; docs/security.md)."""

    model_config = _GROUP_CONFIG

    max_request_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    max_instance_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    # An upload body up to this size is split in memory; a larger one is spooled to a temporary file.
    upload_memory_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    max_instances: int = Field(default=64, ge=1)
    # 24 Mi pixels: above the largest CR/DX detector (43 x 43 cm at 0.1 mm, 4300 x 4300 = 18.5 M), and
    # what keeps the listener's analysis of one instance under 600 MB (docs/security.md, "Memory bounds").
    max_pixels: int = Field(default=24 * 1024 * 1024, ge=1)
    max_json_bytes: int = Field(default=64 * 1024, ge=256)
    # Bytes of DICOM files decoded at the same time in one process (docs/security.md, "Memory bounds").
    max_decode_bytes: int = Field(default=512 * 1024 * 1024, ge=1024 * 1024)


class RecordSettings(BaseSettings):
    """What the record files: output UIDs, patients' issuers, the priority policy (``settings.record``)."""

    model_config = _GROUP_CONFIG

    org_root: str = "1.2.826.0.1.3680043.10.1453"
    site_policy: Path | None = None
    # Patient identity (docs/security.md): the issuer a facility's senders mean when they name none
    facility_issuers: dict[str, str] = Field(default_factory=dict)
    default_issuer: str | None = None
    keep_training_inputs: bool = True
    """Keep each imaging result's de-identified model input for retraining, while consent allows it."""


class RegistrySettings(BaseSettings):
    """What the promotion gate requires of a challenger beyond its metrics (``settings.registry``)."""

    model_config = _GROUP_CONFIG

    gate_min_shadow_studies: int = Field(default=0, ge=0)
    """Shadow-scored inputs the promotion gate requires before a challenger may become champion."""
    gate_min_reader_verdicts: int = Field(default=0, ge=0)
    """Readers' verdicts on shadow-scored inputs the promotion gate requires (``registry promote``)."""


class SecuritySettings(BaseSettings):
    """Tokens: the embedded issuer or an external one (JWKS), and the claims read (``settings.security``)."""

    model_config = _GROUP_CONFIG

    issuer: str = "dxassist"
    audience: str = "dxassist-api"
    token_ttl_seconds: int = Field(default=3600, ge=60)
    token_max_ttl_seconds: int = Field(default=366 * 24 * 3600, ge=60)
    """Longest lifetime ``dxassist token issue --ttl`` grants (``DXASSIST_TOKEN_MAX_TTL_SECONDS``; a
    year and a day): a leaked token stays valid that long unless revoked (``dxassist token revoke``)."""
    signing_key_passphrase: SecretStr | None = None
    jwks_url: str | None = None
    jwt_algorithm: Literal[
        "EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"
    ] = "EdDSA"
    jwks_cache_seconds: int = Field(default=300, ge=0)
    role_claim: str = "role"
    facility_claim: str = "facility"


class UiSettings(BaseSettings):
    """The readers' pages (docs/ui.md): session clocks, sign-in lockout, worklist guard, and single sign-on
    with the hospital's OpenID Connect provider (``settings.ui``).

    Attributes:
        ui_oidc_issuer: The provider's issuer URL (its discovery document is at
            ``<issuer>/.well-known/openid-configuration``); None: no single sign-on, the sign-in page offers
            the local accounts only. https, or plain http on the loopback (tests).
        ui_oidc_client_id: The client id the provider registered for the pages (required with an issuer).
        ui_oidc_client_secret: Its secret (``client_secret_basic``, or ``client_secret_post`` when the
            provider offers only that); None: a public client (PKCE only).
        ui_oidc_scopes: The scopes asked for (``openid`` is always added).
        ui_oidc_username_claim: The ID token's claim that names the local account.
        ui_oidc_display_name: The provider's name on the sign-in page's button ("Sign in with ...").
        ui_oidc_cafile: Certificates (PEM) the provider's TLS certificate must chain to, for a private
            authority; None: the system's trust store.
    """

    model_config = _GROUP_CONFIG

    ui_session_idle_minutes: int = Field(default=15, ge=1, le=24 * 60)
    ui_session_max_hours: float = Field(default=12.0, gt=0, le=7 * 24)
    ui_lockout_attempts: int = Field(default=5, ge=1, le=100)
    ui_lockout_minutes: int = Field(default=15, ge=1)
    worklist_max_wait_minutes: int = Field(default=240, ge=0)  # 0 turns the guard off
    ui_refresh_seconds: int = Field(default=30, ge=2, le=3600)
    ui_oidc_issuer: Annotated[str | None, Field(min_length=1, max_length=2048)] = None
    ui_oidc_client_id: Annotated[str | None, Field(min_length=1, max_length=255)] = None
    ui_oidc_client_secret: SecretStr | None = None
    ui_oidc_scopes: Annotated[str, Field(min_length=1, max_length=1024)] = "openid profile"
    ui_oidc_username_claim: Annotated[str, Field(min_length=1, max_length=255)] = "preferred_username"
    ui_oidc_display_name: Annotated[str, Field(min_length=1, max_length=64)] = "the hospital account"
    ui_oidc_cafile: Path | None = None

    @model_validator(mode="after")
    def _oidc(self) -> UiSettings:
        if self.ui_oidc_issuer is None:
            return self
        parts = urlsplit(self.ui_oidc_issuer)
        loopback = parts.scheme == "http" and parts.hostname in {"127.0.0.1", "localhost", "::1"}
        if not (parts.scheme == "https" or loopback) or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(
                "DXASSIST_UI_OIDC_ISSUER must be the provider's https issuer URL, without query or fragment "
                "(plain http is accepted on 127.0.0.1 only)."
            )
        if self.ui_oidc_client_id is None:
            raise ValueError(
                "DXASSIST_UI_OIDC_ISSUER is set but DXASSIST_UI_OIDC_CLIENT_ID is not: give the client id "
                "the identity provider registered for the pages."
            )
        return self

    @property
    def ui_oidc(self) -> bool:
        """Whether the pages offer single sign-on."""
        return self.ui_oidc_issuer is not None


class DimseSettings(BaseSettings):
    """``dxassist listen``, the DIMSE entry point (``settings.dimse``; docs/pacs.md).

    Attributes:
        dimse_port: Port of ``dxassist listen`` when ``--port`` is not given.
        dimse_allowed_aets: No longer used (a warning says so at start): register each node with its
            facility in ``dimse_nodes``.
        dimse_nodes: The DICOM nodes allowed to send (JSON list in ``DXASSIST_DIMSE_NODES`` of
            ``{"ae_title", "facility"}``, optionally ``"host"``, ``"certificate_cn"``,
            ``"certificate_sha256"``: :class:`DimseNode`); any other calling AE is refused at association.
        dimse_open_facility: Opt into an open listener: any calling AE is accepted, and the results of an
            unregistered one belong to this facility (``DXASSIST_DIMSE_OPEN_FACILITY``).
        dimse_stable_seconds: Quiet period: a study is analysed once no instance arrived for this long.
        dimse_max_attempts: Attempts at analysing a received study before its files are moved to
            ``DXASSIST_HOME/dead-letter/studies``.
        dimse_retry_seconds: First delay before a received study whose analysis failed is tried again;
            doubles each attempt, up to ``delivery_backoff_cap_seconds``.
        dimse_spool: The listener's spool: the folder holding ``incoming/``, ``receiving/`` and
            ``dead-letter/studies/`` (``DXASSIST_DIMSE_SPOOL``; relative to ``DXASSIST_HOME``, which is the
            default). Several listener instances share one spool on shared storage (NFS, an RWX volume).
        dimse_grouping: Where the grouping state of received studies lives: ``process`` (memory of the one
            listener, the default) or ``database`` (the record, shared by several listener instances on one
            spool: a study is analysed once, with every instance any of them received).
        dimse_lease_seconds: With ``database`` grouping: how long a listener's claim on a study it analyses
            lasts without renewal (it renews every third of it); a dead instance's study is taken over
            by another after this.
        dimse_metrics_port: Port of the listener's ``GET /metrics`` (Prometheus; ``--metrics-port``); None:
            not served. The listener's analyses, deliveries and dead letters are counted in its process.
        dimse_metrics_host: Address the listener's metrics are served on (loopback by default).
        dimse_tls_certfile: The listener's certificate (PEM, with its chain): with ``dimse_tls_keyfile``,
            associations are accepted over TLS only (DICOM TLS, PS3.15 Annex B; TLS 1.2 or newer).
        dimse_tls_keyfile: The private key of ``dimse_tls_certfile`` (PEM, unencrypted).
        dimse_tls_cafile: Certificates (PEM) a sending node's certificate must chain to: with it, a node
            without such a certificate is refused at the handshake (mutual TLS, as IHE ATNA's secure node).
        dimse_network_timeout: Seconds an association may stay silent before it is aborted, and within
            which each PDU (a TLS handshake too) must arrive whole once its first byte has: a peer that
            stops or trickles in the middle of one is cut off instead of holding its thread.
        dimse_max_associations: Connections the listener serves at once; more are closed on arrival.
        dimse_max_associations_per_host: Of those, how many from one peer, so that one peer (a
            stuck router, a scanner of the network) cannot take every slot: an IPv4 address, or an IPv6
            /64 (a registered node's own ``host`` keeps a share of its own). Behind a load balancer that
            hides the senders' addresses, set it to ``dimse_max_associations``.
        dimse_min_free_bytes: Free space the listener leaves on its spool's file system: a C-STORE that
            arrives when less is free is answered 0xA700 (``storage_full``; the sender keeps the instance
            and tries again), so the record, on the same disk by default, keeps room to file the studies
            already received. 0: no reserve.
    """

    model_config = _GROUP_CONFIG

    dimse_port: int = Field(default=11112, ge=1, le=65535)
    dimse_allowed_aets: list[str] = Field(default_factory=list)
    dimse_nodes: list[DimseNode] = Field(default_factory=list)
    dimse_open_facility: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    dimse_stable_seconds: float = Field(default=5.0, ge=0)
    dimse_max_attempts: int = Field(default=5, ge=1)
    dimse_retry_seconds: float = Field(default=5.0, gt=0)
    dimse_spool: Path | None = None
    dimse_grouping: Literal["process", "database"] = "process"
    dimse_lease_seconds: float = Field(default=60.0, ge=1)
    dimse_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    dimse_metrics_host: Annotated[str, Field(min_length=1, max_length=255)] = "127.0.0.1"
    dimse_tls_certfile: Path | None = None
    dimse_tls_keyfile: Path | None = None
    dimse_tls_cafile: Path | None = None
    dimse_network_timeout: float = Field(default=120.0, ge=0.5, le=3600)
    dimse_max_associations: int = Field(default=20, ge=1, le=1000)
    dimse_max_associations_per_host: int = Field(default=10, ge=1, le=1000)
    dimse_min_free_bytes: int = Field(default=256 << 20, ge=0)

    @property
    def dimse_tls(self) -> bool:
        """Whether the listener accepts associations over TLS only."""
        return self.dimse_tls_certfile is not None

    @model_validator(mode="after")
    def _tls_complete(self) -> DimseSettings:
        if (self.dimse_tls_certfile is None) != (self.dimse_tls_keyfile is None):
            raise ValueError(
                "DXASSIST_DIMSE_TLS_CERTFILE and DXASSIST_DIMSE_TLS_KEYFILE go together: set both or neither."
            )
        if self.dimse_tls_cafile is not None and self.dimse_tls_certfile is None:
            raise ValueError(
                "DXASSIST_DIMSE_TLS_CAFILE verifies the senders' certificates over TLS: set "
                "DXASSIST_DIMSE_TLS_CERTFILE and DXASSIST_DIMSE_TLS_KEYFILE too."
            )
        bound = (n.certificate_cn is not None or n.certificate_sha256 is not None for n in self.dimse_nodes)
        if self.dimse_tls_cafile is None and any(bound):
            raise ValueError(
                "A DICOM node's certificate_cn and certificate_sha256 are checked against a verified "
                "certificate: set DXASSIST_DIMSE_TLS_CAFILE (and the listener's certificate and key)."
            )
        return self

    @model_validator(mode="after")
    def _unique_titles(self) -> DimseSettings:
        titles = [node.ae_title.strip() for node in self.dimse_nodes]
        if len(set(titles)) != len(titles):
            raise ValueError("Each DICOM node AE title may be registered once (DXASSIST_DIMSE_NODES).")
        return self

    def node_certified(self, ae_title: str | None, names: Collection[str]) -> bool:
        """Whether an association as ``ae_title`` may present a certificate of these ``names`` (its common
        name and DNS alternative names; empty: none): a registered node with a ``certificate_cn`` only
        with that name among them; any other, yes."""
        title = (ae_title or "").strip()
        for node in self.dimse_nodes:
            if node.ae_title.strip() == title:
                return node.certificate_cn is None or node.certificate_cn in names
        return True

    def node_pinned(self, ae_title: str | None, sha256: str | None) -> bool:
        """Whether an association as ``ae_title`` may present the certificate of fingerprint ``sha256``
        (lower-case hex; None: no certificate): a registered node with a ``certificate_sha256`` only that
        one; any other, yes."""
        title = (ae_title or "").strip()
        for node in self.dimse_nodes:
            if node.ae_title.strip() == title:
                return node.certificate_sha256 is None or node.certificate_sha256 == sha256
        return True

    def node_facility(self, ae_title: str | None, host: str | None = None) -> str | None:
        """The facility owning what the calling AE ``ae_title`` (from ``host``) sends; None: refused.

        A registered node gives its facility (when it names a host, only from that host: the same address
        however written, an IPv4 one also as a listener bound to ``::`` sees it, ``::ffff:a.b.c.d``); an
        unknown AE gives the open-listener facility when the operator set one, else nothing.
        """
        title = (ae_title or "").strip()
        for node in self.dimse_nodes:
            if node.ae_title.strip() == title:
                if node.host is not None and host is not None and not _same_address(node.host, host):
                    return None
                return node.facility
        return self.dimse_open_facility


def _same_address(registered: str, peer: str) -> bool:
    """Whether a node's registered ``host`` is the peer's address: IP addresses compared as addresses
    (``0:0:0:0:0:0:0:1`` is ``::1``, an IPv4-mapped IPv6 address is its IPv4 address), anything else as
    text."""

    def canonical(text: str) -> str:
        try:
            address = ipaddress.ip_address(text.strip().split("%", 1)[0])
        except ValueError:
            return text.strip().lower()
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(address)

    return canonical(registered) == canonical(peer)


class DeliverySettings(BaseSettings):
    """Results back to the PACS: destinations, the outbox worker's retries (``settings.delivery``).

    Attributes:
        destinations: Where results are delivered (JSON list in ``DXASSIST_DESTINATIONS``).
        delivery_backoff_seconds: First retry delay of a failed delivery; doubles each attempt.
        delivery_backoff_cap_seconds: Longest retry delay.
        delivery_poll_seconds: How often the outbox worker looks for due objects.
        delivery_max_attempts: Attempts of one object to one destination before it goes to the
            dead-letter state (120 attempts at the default backoff: about two hours of outage).
        delivery_lease_seconds: How long a worker that claimed an object has to send it before the worker
            of another replica may take it over (it does only if the first one died mid-send). Longer
            than every destination's ``timeout_seconds``, or two replicas could send at once.
        build_max_attempts: Attempts at building a result's DICOM outputs (the first included).
        build_lease_seconds: How long an outbox worker holds a build it claimed before the worker of any
            process may take it over (it does so only if that worker died mid-build).
    """

    model_config = _GROUP_CONFIG

    destinations: list[Destination] = Field(default_factory=list)
    delivery_backoff_seconds: float = Field(default=2.0, gt=0)
    delivery_backoff_cap_seconds: float = Field(default=60.0, gt=0)
    delivery_poll_seconds: float = Field(default=1.0, gt=0)
    delivery_max_attempts: int = Field(default=120, ge=1)
    delivery_lease_seconds: float = Field(default=120.0, gt=0)
    build_max_attempts: int = Field(default=3, ge=1)
    build_lease_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _unique_names(self) -> DeliverySettings:
        slow = [d.name for d in self.destinations if d.timeout_seconds >= self.delivery_lease_seconds]
        if slow:
            raise ValueError(
                f"DXASSIST_DELIVERY_LEASE_SECONDS ({self.delivery_lease_seconds:g}) must be longer than the "
                f"timeout_seconds of every destination ({', '.join(slow)}): a lease that ends during an "
                "attempt lets another replica send the same object at the same time."
            )
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError("Destination names must be unique.")
        return self


class BatchSettings(BaseSettings):
    """``dxassist batch score`` (``settings.batch``).

    Attributes:
        batch_facility: The facility that owns an archive's results when ``--facility`` is not given.
            Unset: the one facility the configuration names (``facility_issuers``, ``dimse_nodes``,
            ``dimse_open_facility``), if there is exactly one; else the command asks for ``--facility``.
        batch_qido_page_size: Answers asked for per QIDO-RS page (``limit``) of a DICOMweb source, for
            its study list and each study's instance list: at most what the server answers per page.
    """

    model_config = _GROUP_CONFIG

    batch_facility: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    batch_qido_page_size: int = Field(default=500, ge=1, le=100_000)


class LogSettings(BaseSettings):
    """The process's JSON logs (docs/operations.md, "Logs"; ``settings.logs``)."""

    model_config = _GROUP_CONFIG

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file: str | None = None
    """Unset: ``logs/<process>.jsonl`` under the home; empty: stderr only (the platform collects it);
    a path (relative to the home, or absolute): that file. One file per process."""
    log_max_bytes: int = Field(default=50 * 1024 * 1024, ge=0)
    """Size at which the log file is rotated; 0 never rotates (an outside logrotate's job then)."""
    log_backups: int = Field(default=5, ge=0, le=1000)
    """Rotated files kept."""


class _FlatEnv(EnvSettingsSource):
    """The environment, for :class:`Settings`'s own fields only: each group reads its own variables."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in Settings.GROUPS:
            return None, field_name, False
        return super().get_field_value(field, field_name)


class Settings(BaseSettings):
    """Everything one dxassist process needs to know about its environment.

    All state lives under ``home``. ``database_url`` and ``mlflow_tracking_uri`` override the
    embedded SQLite defaults. The other settings are in groups (attributes named in :attr:`GROUPS`);
    a keyword argument may name a group (``runtime={"batch_max_size": 4}`` or a group object) or a
    setting by its flat name (``batch_max_size=4``); what is not given comes from the environment.
    """

    model_config = SettingsConfigDict(env_prefix="DXASSIST_", extra="ignore", frozen=False)

    GROUPS: ClassVar[dict[str, type[BaseSettings]]] = {}

    environment: Literal["development", "production"] = "development"
    home: Path = Path("var")
    database_url: str | None = None
    mlflow_tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "DXASSIST_MLFLOW_TRACKING_URI")
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    record: RecordSettings = Field(default_factory=RecordSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    dimse: DimseSettings = Field(default_factory=DimseSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    logs: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _FlatEnv(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _group_flat_names(cls, data: Any) -> Any:
        """Put each setting given by its flat name into its group; build each group over the environment."""
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        flat: dict[str, dict[str, Any]] = {group: {} for group in cls.GROUPS}
        for key, value in data.items():
            group = _FIELD_GROUP.get(key)
            if group is not None:
                flat[group][key] = value
            elif key in cls.model_fields or key in _TOP_ALIASES:
                out[key] = value
            else:
                raise ValueError(f"{key!r} is not a dxassist setting.")
        for group, model in cls.GROUPS.items():
            given = out.get(group)
            if given is None and not flat[group]:
                continue
            if isinstance(given, model):
                given = given.model_dump()
            values = {**(given or {}), **flat[group]}
            try:
                out[group] = model(**values)
            except ValidationError as e:
                raise ValueError(str(e)) from e
        return out

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

    def configured_facilities(self) -> frozenset[str]:
        """The facilities the configuration names: patient-identifier issuers and DICOM nodes."""
        named = set(self.record.facility_issuers)
        named.update(node.facility for node in self.dimse.dimse_nodes)
        if self.dimse.dimse_open_facility:
            named.add(self.dimse.dimse_open_facility)
        return frozenset(named)

    @property
    def listener_spool(self) -> Path:
        """The listener's spool folder (``DXASSIST_DIMSE_SPOOL``, relative to home; home by default)."""
        spool = self.dimse.dimse_spool
        if spool is None:
            return self.resolved_home
        spool = spool.expanduser()
        return spool if spool.is_absolute() else self.resolved_home / spool

    def log_path(self, default_name: str) -> Path | None:
        """The log file of a process whose default file is ``logs/<default_name>``; None: stderr only."""
        log_file = self.logs.log_file
        if log_file is None:
            return self.log_dir / default_name
        if not log_file.strip():
            return None
        path = Path(log_file.strip()).expanduser()
        return path if path.is_absolute() else self.resolved_home / path


Settings.GROUPS.update(
    {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings)
    }
)
_TOP_ALIASES: frozenset[str] = frozenset({"MLFLOW_TRACKING_URI", "DXASSIST_MLFLOW_TRACKING_URI"})
_FIELD_GROUP: dict[str, str] = {}
for _group, _model in Settings.GROUPS.items():
    for _name in _model.model_fields:
        if _name in _FIELD_GROUP or _name in Settings.model_fields:
            raise RuntimeError(f"Setting {_name!r} is in two groups; each setting has one flat name.")
        _FIELD_GROUP[_name] = _group


def setting_names() -> dict[str, str]:
    """Every setting's flat name → the group that holds it (``""`` for :class:`Settings`'s own)."""
    names = {name: "" for name in Settings.model_fields if name not in Settings.GROUPS}
    names.update(_FIELD_GROUP)
    return names


def get_settings() -> Settings:
    """Read settings from the environment (a new object each call, so tests can change the environment)."""
    return Settings()
