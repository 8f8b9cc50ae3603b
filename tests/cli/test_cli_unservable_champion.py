"""A home trained before an ONNX contract change: bootstrap finds the champion the server cannot load.

The home's ``cxr-findings`` champion is a tiny model of the older imaging contract (no ``ood`` output,
no ``dxassist.ood``); ``vitals-triage`` is current. Training a replacement takes minutes, so the check
(``unservable_champions``) and the registry's replacement promotion are tested directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli_home import FINDINGS, make_home, register, registry_for
from tiny_models import build_imaging_onnx, build_triage_onnx

from inference.cli import unservable_champions
from inference.config import Settings
from model_registry import PromotionRefused

FIGURES = {f"val_auroc_{f}": 0.90 for f in FINDINGS} | {"val_macro_auroc": 0.9}


@pytest.fixture
def old_home(tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_home(tmp_path / "home", migrated_store)
    exports = root / "exports"
    client = registry_for(root)
    old = build_imaging_onnx(
        exports / "cxr-old.onnx", with_ood=False, drop_metadata=("dxassist.ood",), seed=1
    )
    register(client, "cxr-findings", old, FIGURES)
    client.promote("cxr-findings", 1)
    register(client, "vitals-triage", build_triage_onnx(exports / "triage.onnx"), {"val_auroc": 0.8})
    client.promote("vitals-triage", 1)
    monkeypatch.setenv("DXASSIST_HOME", str(root))
    return root


def test_bootstrap_check_names_the_unservable_champion_its_version_and_what_is_missing(
    old_home: Path,
) -> None:
    found = unservable_champions(Settings())

    assert set(found) == {"cxr-findings"}  # the current triage model loads
    line = found["cxr-findings"]
    assert line.startswith("cxr-findings: champion version 1 cannot be served")
    assert "metadata key(s) dxassist.ood and the output(s) ood;" in line
    assert "\n" not in line


def test_bootstrap_check_finds_nothing_when_every_champion_loads(old_home: Path, tmp_path: Path) -> None:
    client = registry_for(old_home)
    current = register(client, "cxr-findings", build_imaging_onnx(tmp_path / "new.onnx", seed=2), FIGURES)
    client.promote("cxr-findings", current.version)

    assert unservable_champions(Settings()) == {}


def test_a_missing_ood_key_alone_is_named(old_home: Path, tmp_path: Path) -> None:
    client = registry_for(old_home)
    keyless = build_imaging_onnx(tmp_path / "keyless.onnx", seed=3, drop_metadata=("dxassist.ood",))
    version = register(client, "cxr-findings", keyless, FIGURES).version
    client.promote("cxr-findings", version)

    line = unservable_champions(Settings())["cxr-findings"]
    assert f"champion version {version} " in line and "dxassist.ood" in line


def test_a_replacement_is_not_compared_with_the_champion_it_replaces(old_home: Path, tmp_path: Path) -> None:
    client = registry_for(old_home)
    weaker = FIGURES | {"val_auroc_pneumothorax": 0.80}
    new = register(client, "cxr-findings", build_imaging_onnx(tmp_path / "new.onnx", seed=4), weaker)
    with pytest.raises(PromotionRefused):
        client.promote("cxr-findings", new.version)  # the ordinary gate compares with version 1

    decision = client.promote("cxr-findings", new.version, champion_unservable=True)

    assert decision.passed and decision.previous_champion == "1"
    assert "cannot load" in decision.reason
    assert client.resolve("cxr-findings", "champion") == new.version
    assert client.get_version("cxr-findings", 1).version == "1"  # the old version stays registered
    assert client.rollback("cxr-findings") == "1"


def test_bootstrap_replaces_an_unservable_triage_champion_and_keeps_the_old_version(
    tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole decision, with a real (``tiny`` profile, seconds) triage training: found, replaced."""
    from training.cli import bootstrap

    root = make_home(tmp_path / "home", migrated_store)
    client = registry_for(root)
    register(client, "cxr-findings", build_imaging_onnx(tmp_path / "cxr.onnx"), FIGURES)
    client.promote("cxr-findings", 1)
    # Older triage contract: an unmeasured sign contributes, and no normal point per sign.
    old = build_triage_onnx(
        tmp_path / "old-triage.onnx", missing_contribution=0.3, drop_metadata=("dxassist.reference",)
    )
    register(client, "vitals-triage", old, {"val_auroc": 0.99})  # better figures than any retrained model
    client.promote("vitals-triage", 1)
    monkeypatch.setenv("DXASSIST_HOME", str(root))
    settings = Settings()

    found = unservable_champions(settings)
    assert set(found) == {"vitals-triage"}
    assert "champion version 1 " in found["vitals-triage"] and "dxassist.reference" in found["vitals-triage"]

    lines: list[str] = []
    results = {r.name: r for r in bootstrap(settings, profile="tiny", echo=lines.append, unservable=found)}

    assert results["cxr-findings"].action == "kept" and results["cxr-findings"].version == "1"
    assert results["vitals-triage"].action == "replaced" and results["vitals-triage"].version == "2"
    assert registry_for(root).resolve("vitals-triage", "champion") == "2"
    assert registry_for(root).get_version("vitals-triage", 1).version == "1"  # kept, for the record
    assert any("replaces version 1, which this server cannot load" in line for line in lines)
    assert unservable_champions(settings) == {}  # what `dxassist serve` will load now passes
