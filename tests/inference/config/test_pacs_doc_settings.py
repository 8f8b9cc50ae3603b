"""docs/pacs.md, what integrators follow step by step, names the settings the listener really reads.

It told them to set ``DXASSIST_DIMSE_ALLOWED_AETS``, which the listener no longer reads (it warns at
start and rejects every unregistered AE), so a PACS wired by the doc could not send a single study.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from test_settings_documented import settings_read_by_the_code

from inference.config import Settings

ROOT = Path(__file__).resolve().parents[3]
PACS_DOC = ROOT / "docs" / "pacs.md"
_RETIRED = re.compile(r"(DXASSIST_[A-Z0-9_]+) is no longer used")


def _retired_settings() -> set[str]:
    """Settings the code still parses but announces as unused (its start-up warning says so)."""
    return {
        name
        for path in (ROOT / "inference").rglob("*.py")
        for name in _RETIRED.findall(" ".join(path.read_text(encoding="utf-8").split()).replace('" "', ""))
    }


def test_the_scan_finds_the_retired_allow_list() -> None:
    assert "DXASSIST_DIMSE_ALLOWED_AETS" in _retired_settings()


def test_the_pacs_guide_sets_only_settings_the_code_reads_and_uses() -> None:
    text = PACS_DOC.read_text(encoding="utf-8")
    read = settings_read_by_the_code()
    retired = _retired_settings()
    for line in text.splitlines():
        for name in set(re.findall(r"\bDXASSIST_[A-Z][A-Z0-9_]*[A-Z0-9]\b", line)):
            assert name in read, f"docs/pacs.md names {name}, which no code reads"
            if name in retired:
                assert "no longer" in line, f"docs/pacs.md tells integrators to use the retired {name}"


def test_the_pacs_guides_node_registration_is_what_the_settings_accept() -> None:
    text = PACS_DOC.read_text(encoding="utf-8")
    examples = re.findall(r"DXASSIST_DIMSE_NODES='(\[.*?\])'", text)
    assert examples, "docs/pacs.md shows how to register the PACS in DXASSIST_DIMSE_NODES"
    for example in examples:
        nodes = Settings(dimse_nodes=json.loads(example)).dimse.dimse_nodes
        assert nodes and all(node.ae_title and node.facility for node in nodes)
