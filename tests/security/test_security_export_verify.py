"""``dxassist export verify FOLDER`` as a security officer runs it on a kept-inputs training export: the
manifest's ``content_sha256`` is recomputed from the files, so an export edited after it was written (a
label flipped, an input added or removed) is told apart from the one the record audited.

Before, only the training side recomputed the digest, when it read the export: nothing let an officer
check a folder on its own.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
from _security_env import seeded_env
from test_security_export_patient_audit import _file_with_feedback

from inference._cli_commands import export_kept_training_set
from inference.cli import main
from inference.services._training_export import LABELS_FILE, MANIFEST_FILE


@pytest.fixture
def exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DXASSIST_HOME", str(tmp_path / "home"))
    env = seeded_env(tmp_path / "home")
    source = tmp_path / "source"
    source.mkdir()
    for n in range(2):
        _file_with_feedback(env, source, f"IPP-VERIFY-{n}")
    out = tmp_path / "export"
    assert export_kept_training_set(env.settings, out=out, stream=io.StringIO()) == 0
    return out


def _verify(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["export", "verify", str(folder)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_an_untouched_export_matches_its_manifest(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, said = _verify(exported, capsys)
    assert status == 0, said
    assert "matches its manifest" in said


def test_a_label_flipped_after_the_export_is_reported(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = exported / LABELS_FILE
    with labels.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields, rows = list(reader.fieldnames or []), list(reader)
    rows[0]["nodule"] = "0" if rows[0]["nodule"] == "1" else "1"
    with labels.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    status, said = _verify(exported, capsys)
    assert status == 1, said
    assert "does not match its manifest" in said


def test_an_input_added_or_removed_after_the_export_is_reported(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, *_ = sorted((exported / "inputs").iterdir())
    shutil.copy(first, exported / "inputs" / "added.npz")
    assert _verify(exported, capsys)[0] == 1
    (exported / "inputs" / "added.npz").unlink()
    assert _verify(exported, capsys)[0] == 0
    first.unlink()
    assert _verify(exported, capsys)[0] == 1


def test_a_folder_that_is_no_export_is_refused(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (exported / MANIFEST_FILE).unlink()
    status, said = _verify(exported, capsys)
    assert status == 2 and "manifest" in said, said
    status, said = _verify(tmp_path / "nowhere", capsys)
    assert status == 2, said
