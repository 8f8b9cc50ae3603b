"""``python -m benchmarks.paired`` compares two checkouts of the server; it refuses anything else up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import paired


def test_a_folder_that_is_not_a_checkout_is_refused_before_anything_is_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout = Path(__file__).resolve().parents[2]
    assert paired.main([str(tmp_path), str(checkout)]) == 2
    err = capsys.readouterr().err
    assert f"old: {tmp_path} is not a checkout of this project" in err
    assert paired.main([str(checkout), str(tmp_path / "missing")]) == 2
    assert "new: " in capsys.readouterr().err
