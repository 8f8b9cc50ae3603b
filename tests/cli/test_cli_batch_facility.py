"""``dxassist batch score`` without ``--facility``: the owner comes from a setting or the configuration.

The contract's form is ``batch score SOURCE [--scheduler ADDRESS] [--model-version V]``: an operator whose
configuration names one facility need not repeat it; one whose configuration names several (or none) is
told, in one line and before any work, to name it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from _dxassist_cli import DXASSIST, REPO, dxassist_env

from inference._batch_cli import resolve_facility
from inference.batch import BatchError
from inference.config import Settings

NODES = json.dumps([{"ae_title": "MOBILE3", "facility": "MOBILE-UNIT-3"}])


def _env(home: Path, **settings: str) -> dict[str, str]:
    env = dxassist_env(home)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(settings)
    return env


def _run(home: Path, source: Path, *extra: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DXASSIST), "batch", "score", str(source), "--workers", "1", *extra],
        env=_env(home, **settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_flag_then_setting_then_the_one_configured_facility(tmp_path: Path) -> None:
    one = Settings(home=tmp_path, dimse_nodes=json.loads(NODES))
    assert resolve_facility(one, None) == "MOBILE-UNIT-3"
    assert resolve_facility(one, "CHU-A") == "CHU-A"
    chosen = Settings(home=tmp_path, dimse_nodes=json.loads(NODES), batch_facility="CHU-B")
    assert resolve_facility(chosen, None) == "CHU-B"
    # The same facility named twice (a node and an issuer) is still one facility.
    same = Settings(
        home=tmp_path, dimse_nodes=json.loads(NODES), facility_issuers={"MOBILE-UNIT-3": "urn:oid:1.2.3"}
    )
    assert resolve_facility(same, None) == "MOBILE-UNIT-3"


def test_several_or_no_facilities_ask_for_one(tmp_path: Path) -> None:
    several = Settings(
        home=tmp_path, dimse_nodes=json.loads(NODES), facility_issuers={"CHU-A": "urn:oid:1.2.3"}
    )
    with pytest.raises(BatchError, match="configuration names 2 facilities"):
        resolve_facility(several, None)
    with pytest.raises(BatchError, match="configuration names none"):
        resolve_facility(Settings(home=tmp_path), None)
    with pytest.raises(BatchError, match="--facility is empty"):
        resolve_facility(Settings(home=tmp_path), " ")


def test_command_without_facility_stops_in_one_line(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    proc = _run(tmp_path / "home", archive, DXASSIST_FACILITY_ISSUERS='{"CHU-A": "x", "CHU-B": "y"}')
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "dxassist: Which facility owns this archive's results? Give --facility FACILITY or set "
        "DXASSIST_BATCH_FACILITY (the configuration names 2 facilities)."
    )
    # Nothing was started: no record was created for a run that could not say whose results they are.
    assert not (tmp_path / "home" / "record.db").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_command_uses_the_one_configured_facility(home: Path, tmp_path: Path) -> None:
    """With one facility configured the run goes on to the source (here: a folder that is missing)."""
    proc = _run(home, tmp_path / "nowhere", DXASSIST_DIMSE_NODES=NODES)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"dxassist: The archive folder {tmp_path / 'nowhere'} does not exist or is not a folder."
    )
    proc = _run(home, tmp_path / "nowhere", DXASSIST_BATCH_FACILITY="CHU-A")
    assert proc.returncode == 2
    assert "does not exist or is not a folder" in proc.stderr
