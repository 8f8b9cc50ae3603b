"""docs/operations.md names every setting the code reads, and nothing the code does not read."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from inference.config import Settings, setting_names

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "operations.md"
PACKAGES = ("inference", "model_registry", "training")
# Values that look like settings but are not read from the environment.
NOT_SETTINGS = {"DXASSIST_SYN_1"}  # the ImplementationVersionName of synthetic DICOM files
_NAME = re.compile(r"\bDXASSIST_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
_ENVIRON = re.compile(
    r"""(?:os\.environ(?:\.get|\.setdefault|\.pop)?\(\s*|os\.environ\[\s*|os\.getenv\(\s*)["']([A-Z][A-Z0-9_]*)["']"""
)

_PAIRS = re.compile(r"""\(\s*["']([A-Z][A-Z0-9_]*)["'],\s*["'][^"']*["']\s*\)""")


def _field_names() -> set[str]:
    """Environment variables of :class:`Settings`: ``DXASSIST_`` + each flat name, or a field's aliases."""
    names = {f"DXASSIST_{name}".upper() for name in setting_names()}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names -= {f"DXASSIST_{name}".upper()}
            names |= {str(choice) for choice in alias.choices}
    return names


def _sources() -> list[Path]:
    return [path for package in PACKAGES for path in (ROOT / package).rglob("*.py")]


def settings_read_by_the_code() -> set[str]:
    """Every environment variable a dxassist process reads or sets."""
    names = _field_names()
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        names |= set(_NAME.findall(text)) - NOT_SETTINGS
        names |= set(_ENVIRON.findall(text))
        if "environ.setdefault(_key" in text:  # a loop over ("NAME", "value") pairs
            names |= set(_PAIRS.findall(text))
    return names


def documented() -> set[str]:
    return set(re.findall(r"`([A-Z][A-Z0-9_]*[A-Z0-9])(?:=[^`]*)?`", DOC.read_text(encoding="utf-8")))


def test_the_scan_finds_the_settings_it_must() -> None:
    found = settings_read_by_the_code()
    # Settings fields, an alias, a group field, and variables set with os.environ.
    assert {
        "DXASSIST_HOME",
        "DXASSIST_SITE_POLICY",
        "MLFLOW_TRACKING_URI",
        "DXASSIST_DIMSE_NODES",
        "DXASSIST_LOG_FILE",
        "ORT_DISABLE_TELEMETRY",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
    } <= found


def test_every_setting_is_documented() -> None:
    missing = sorted(settings_read_by_the_code() - documented())
    assert not missing, f"docs/operations.md does not document: {', '.join(missing)}"


def test_the_doc_names_no_setting_the_code_does_not_read() -> None:
    # uvicorn's FORWARDED_ALLOW_IPS is read by uvicorn inside `dxassist serve`, not by our code.
    stale = sorted(
        name
        for name in documented() - settings_read_by_the_code()
        if name.startswith("DXASSIST_") or name == "MLFLOW_TRACKING_URI"
    )
    assert not stale, f"docs/operations.md names settings nothing reads: {', '.join(stale)}"
