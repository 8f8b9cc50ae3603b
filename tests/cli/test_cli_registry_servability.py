"""``dxassist registry promote`` / ``rollback`` never move ``champion`` to a version the server cannot load.

The check is bootstrap's (``inference.runtime.serving_problem``, the server's own loader): a version of an
older ONNX contract, a file of the wrong kind for the name, is refused with a message naming what is wrong
and what to do; the refusal is audited (``attempt`` then ``refused``, one request id) like the gate's,
and ``champion`` stays where it was. Real MLflow store and record in a fresh home per test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli_home import FINDINGS, audit_entries, make_home, register, registry_for
from tiny_models import build_imaging_onnx, build_triage_onnx

from inference.cli import main

MODEL = "cxr-findings"
FIGURES = {f"val_auroc_{f}": 0.90 for f in FINDINGS} | {"val_macro_auroc": 0.9}
OPERATOR = "cli:ml.eng-7"


@pytest.fixture
def fresh_home(tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Champion 1 of each served model, both current and servable."""
    root = make_home(tmp_path / "home", migrated_store)
    client = registry_for(root)
    register(client, MODEL, build_imaging_onnx(tmp_path / "cxr-1.onnx", seed=1), FIGURES)
    client.promote(MODEL, "1")
    register(client, "vitals-triage", build_triage_onnx(tmp_path / "triage.onnx"), {"val_auroc": 0.8})
    client.promote("vitals-triage", "1")
    monkeypatch.setenv("DXASSIST_HOME", str(root))
    return root


def _decisions(home: Path) -> list[tuple[str, str, str]]:
    entries = audit_entries(home, OPERATOR, ("model:promote", "model:rollback"))
    return [(e["action"], e["resource_id"], e["outcome"]) for e in entries]


def test_promoting_a_version_of_an_older_onnx_contract_is_refused_audited_and_moves_nothing(
    fresh_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = build_imaging_onnx(tmp_path / "old.onnx", with_ood=False, drop_metadata=("dxassist.ood",), seed=2)
    version = register(registry_for(fresh_home), MODEL, old, FIGURES).version

    assert main(["registry", "promote", MODEL, version, "--operator", "ml.eng-7"]) == 1

    err = capsys.readouterr().err
    assert f"Version {version} of {MODEL} cannot be served" in err
    assert "dxassist.ood" in err  # what is wrong
    assert "champion stays version 1" in err and "dxassist train imaging --register" in err  # what to do
    assert f"dxassist: promotion refused. Version {version} of {MODEL} cannot be served" in err
    assert registry_for(fresh_home).resolve(MODEL, "champion") == "1"
    assert _decisions(fresh_home) == [
        ("model:promote", f"{MODEL}@{version}", "attempt"),
        ("model:promote", f"{MODEL}@{version}", "refused"),
    ]


def test_promoting_a_model_of_the_wrong_kind_is_refused(
    fresh_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A triage model registered under the imaging name (with figures that pass the gate).
    triage = build_triage_onnx(tmp_path / "triage-as-cxr.onnx")
    version = register(registry_for(fresh_home), MODEL, triage, FIGURES).version

    assert main(["registry", "promote", MODEL, version, "--operator", "ml.eng-7"]) == 1

    assert f"Version {version} of {MODEL} cannot be served" in capsys.readouterr().err
    assert registry_for(fresh_home).resolve(MODEL, "champion") == "1"
    assert _decisions(fresh_home)[-1] == ("model:promote", f"{MODEL}@{version}", "refused")


def test_rolling_back_to_a_champion_this_server_cannot_load_is_refused(
    tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Version 1, of the contract before the ``ood`` output, was champion; version 2 replaced it.
    home = make_home(tmp_path / "home", migrated_store)
    client = registry_for(home)
    old = build_imaging_onnx(tmp_path / "old.onnx", with_ood=False, drop_metadata=("dxassist.ood",), seed=1)
    register(client, MODEL, old, FIGURES)
    client.promote(MODEL, "1")
    register(client, MODEL, build_imaging_onnx(tmp_path / "new.onnx", seed=2), FIGURES)
    client.promote(MODEL, "2", champion_unservable=True)
    monkeypatch.setenv("DXASSIST_HOME", str(home))

    assert main(["registry", "rollback", MODEL, "--operator", "ml.eng-7"]) == 1

    err = capsys.readouterr().err
    assert f"dxassist: rollback refused. Version 1 of {MODEL} cannot be served" in err
    assert "dxassist.ood" in err
    assert "champion stays version 2" in err
    assert client.resolve(MODEL, "champion") == "2"
    assert _decisions(home) == [
        ("model:rollback", f"{MODEL}@1", "attempt"),
        ("model:rollback", f"{MODEL}@1", "refused"),
    ]
