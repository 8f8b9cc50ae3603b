"""Settings of PACS integration: destinations of the results, and the DIMSE listener's knobs.

The fields are meant for :class:`inference.config.Settings`; until they are there, :func:`pacs_settings`
reads each from the process settings when present and otherwise from the same ``DXASSIST_`` environment
variables (``DXASSIST_DESTINATIONS`` holds JSON), so moving them into ``Settings`` changes nothing outside.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_AE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # AE VR: 16 printable characters, no backslash
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


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
        return self


class DimseNode(BaseModel):
    """A DICOM node allowed to send to ``dxassist listen``, and the facility that owns what it sends.

    Attributes:
        ae_title: The node's (calling) AE title.
        facility: The facility its results belong to.
        host: When set, the node's address: an association from elsewhere with this AE title is refused.
    """

    model_config = {"frozen": True}

    ae_title: str
    facility: Annotated[str, Field(min_length=1, max_length=128)]
    host: str | None = None

    @model_validator(mode="after")
    def _valid_title(self) -> DimseNode:
        if not _AE.fullmatch(self.ae_title) or not self.ae_title.strip():
            raise ValueError(
                f"AE title {self.ae_title[:16]!r} of a DICOM node is not valid; an AE title has 1 to 16 "
                "printable characters without a backslash."
            )
        return self


class PacsSettings(BaseSettings):
    """PACS integration settings (environment first, ``DXASSIST_`` prefix).

    Attributes:
        destinations: Where results are delivered (JSON list in ``DXASSIST_DESTINATIONS``).
        dimse_port: Port of ``dxassist listen`` when ``--port`` is not given.
        dimse_allowed_aets: No longer used (a warning says so at start): register each node with its
            facility in ``dimse_nodes``.
        dimse_nodes: The DICOM nodes allowed to send (JSON list in ``DXASSIST_DIMSE_NODES`` of
            ``{"ae_title", "facility", optional "host"}``); any other calling AE is refused at association.
        dimse_open_facility: Opt into an open listener: any calling AE is accepted, and the results of an
            unregistered one belong to this facility (``DXASSIST_DIMSE_OPEN_FACILITY``).
        dimse_stable_seconds: Quiet period: a study is analysed once no instance arrived for this long.
        delivery_backoff_seconds: First retry delay of a failed delivery; doubles each attempt.
        delivery_backoff_cap_seconds: Longest retry delay.
        delivery_poll_seconds: How often the outbox worker looks for due objects.
        delivery_max_attempts: Attempts of one object to one destination before it goes to the
            dead-letter state (120 attempts at the default backoff: about two hours of outage).
        build_max_attempts: Attempts at building a result's DICOM outputs (the first included).
        build_lease_seconds: How long the process that filed a result has to build its outputs before
            the outbox worker of any process takes the build over (it did so only if that process died).
        dimse_max_attempts: Attempts at analysing a received study before its files are moved to
            ``DXASSIST_HOME/dead-letter/studies``.
        dimse_retry_seconds: First delay before a received study whose analysis failed is tried again;
            doubles each attempt, up to ``delivery_backoff_cap_seconds``.
    """

    model_config = SettingsConfigDict(env_prefix="DXASSIST_", extra="ignore")

    destinations: list[Destination] = Field(default_factory=list)
    dimse_port: int = Field(default=11112, ge=1, le=65535)
    dimse_allowed_aets: list[str] = Field(default_factory=list)
    dimse_nodes: list[DimseNode] = Field(default_factory=list)
    dimse_open_facility: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    dimse_stable_seconds: float = Field(default=5.0, ge=0)
    delivery_backoff_seconds: float = Field(default=2.0, gt=0)
    delivery_backoff_cap_seconds: float = Field(default=60.0, gt=0)
    delivery_poll_seconds: float = Field(default=1.0, gt=0)
    delivery_max_attempts: int = Field(default=120, ge=1)
    build_max_attempts: int = Field(default=3, ge=1)
    build_lease_seconds: float = Field(default=60.0, gt=0)
    dimse_max_attempts: int = Field(default=5, ge=1)
    dimse_retry_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _unique_names(self) -> PacsSettings:
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError("Destination names must be unique.")
        titles = [node.ae_title.strip() for node in self.dimse_nodes]
        if len(set(titles)) != len(titles):
            raise ValueError("Each DICOM node AE title may be registered once (DXASSIST_DIMSE_NODES).")
        return self

    def node_facility(self, ae_title: str | None, host: str | None = None) -> str | None:
        """The facility owning what the calling AE ``ae_title`` (from ``host``) sends; None: refused.

        A registered node gives its facility (when it names a host, only from that host); an unknown AE
        gives the open-listener facility when the operator set one, else nothing.
        """
        title = (ae_title or "").strip()
        for node in self.dimse_nodes:
            if node.ae_title.strip() == title:
                if node.host is not None and host is not None and node.host != host:
                    return None
                return node.facility
        return self.dimse_open_facility


def pacs_settings(settings: Any = None) -> PacsSettings:
    """The PACS settings: each field from ``settings`` when it has it, else from the environment."""
    base = PacsSettings()
    if settings is None:
        return base
    values = {
        name: getattr(settings, name)
        for name in PacsSettings.model_fields
        if getattr(settings, name, None) is not None
    }
    if not values:
        return base
    merged = base.model_dump()
    merged.update(
        {
            k: [d.model_dump() if isinstance(d, BaseModel) else d for d in v] if k == "destinations" else v
            for k, v in values.items()
        }
    )
    return PacsSettings.model_validate(merged)
