"""``dxassist registry ...``, ``bootstrap`` (nothing to train) and ``token issue`` through ``main``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from _cli_home import make_home, register, registry_for
from tiny_models import build_imaging_onnx

from inference.cli import main


@pytest.fixture
def at_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DXASSIST_HOME", str(home))
    return home


def test_registry_list_shows_every_version_with_aliases(
    at_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registry", "list"]) == 0

    out = capsys.readouterr().out
    lines = out.splitlines()
    header = [
        "NAME",
        "VERSION",
        "ALIASES",
        "SHA256",
        "CREATED",
        "PARITY",
        "DATASET",
        "SHA256",
        "KEY",
        "METRICS",
    ]
    assert lines[0].split() == header
    champion = registry_for(at_home).get_version("cxr-findings", 1)
    row = next(line for line in lines if line.startswith("cxr-findings") and line.split()[1] == "1")
    assert "champion" in row
    assert champion.sha256 is not None and champion.sha256[:12] in row
    assert "val_macro_auroc=0.900" in row
    assert any(line.startswith("vitals-triage") and "val_auroc=0.800" in line for line in lines)


def test_registry_show_prints_aliases_and_gate_figures(
    at_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registry", "show", "cxr-findings"]) == 0

    out = capsys.readouterr().out
    assert "Aliases:  challenger -> 3, champion -> 1" in out
    assert "tiny-synthetic (tests)" in out
    figure_row = next(line for line in out.splitlines() if line.startswith("val_auroc_pneumothorax"))
    assert figure_row.split()[1:] == ["0.8500", "0.8960", "0.9000"]


def test_registry_list_and_show_print_the_data_set_content_digest_the_gate_compares(
    tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = make_home(tmp_path / "home", migrated_store)
    monkeypatch.setenv("DXASSIST_HOME", str(home))
    client = registry_for(home)
    digest = "5eed" + "c0ffee" * 10
    register(
        client,
        "cxr-findings",
        build_imaging_onnx(tmp_path / "a.onnx"),
        {"val_auroc": 0.9},
        dataset_digest=digest,
    )
    register(client, "cxr-findings", build_imaging_onnx(tmp_path / "b.onnx", seed=2), {"val_auroc": 0.9})

    assert main(["registry", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert "DATASET SHA256" in listed[0]
    rows = {line.split()[1]: line for line in listed if line.startswith("cxr-findings")}
    assert digest[:12] in rows["1"] and digest[:12] not in rows["2"]

    assert main(["registry", "show", "cxr-findings"]) == 0
    shown = capsys.readouterr().out.splitlines()
    header = next(line for line in shown if line.startswith("VERSION"))
    assert "DATASET SHA256" in header
    rows = {line.split()[0]: line for line in shown if line[:1].isdigit()}
    assert digest[:12] in rows["1"] and "tiny-synthetic (tests)" in rows["1"]
    assert digest[:12] not in rows["2"]


def test_promotion_refused_exits_non_zero_with_the_reason(
    at_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registry", "promote", "cxr-findings", "3"]) == 1

    err = capsys.readouterr().err
    assert "promotion refused" in err
    assert "val_auroc_pneumothorax is 0.8500 against 0.9000" in err
    assert registry_for(at_home).resolve("cxr-findings", "champion") == "1"


def test_promote_then_rollback(at_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client = registry_for(at_home)
    try:
        assert main(["registry", "promote", "cxr-findings", "2"]) == 0
        out = capsys.readouterr().out
        assert "champion is now version 2" in out
        assert client.resolve("cxr-findings", "champion") == "2"

        assert main(["registry", "rollback", "cxr-findings"]) == 0
        assert "champion is now version 1 again (was version 2)" in capsys.readouterr().out
        assert client.resolve("cxr-findings", "champion") == "1"
    finally:
        if client.resolve("cxr-findings", "champion") != "1":  # leave the module's home as found
            client.rollback("cxr-findings")


def test_registry_errors_are_messages_not_tracebacks(
    at_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registry", "show", "no-such-model"]) == 1
    assert "no-such-model" in capsys.readouterr().err
    assert main(["registry", "show", "../../etc"]) == 2
    assert "not accepted" in capsys.readouterr().err
    assert main(["registry", "rollback", "vitals-triage"]) == 1
    assert "nothing to roll back" in capsys.readouterr().err


def test_registry_list_on_an_empty_registry(
    tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DXASSIST_HOME", str(make_home(tmp_path / "empty", migrated_store)))
    assert main(["registry", "list"]) == 0
    assert "holds no model yet" in capsys.readouterr().out


def test_bootstrap_with_champions_in_place_trains_nothing_and_fills_the_cache(
    at_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Block torch: bootstrap with nothing to train must not even import it (a server-sized install
    # runs this on every `make run`).
    monkeypatch.setitem(sys.modules, "torch", None)

    assert main(["bootstrap", "--profile", "quick"]) == 0

    out = capsys.readouterr().out
    assert "cxr-findings: champion is version 1; nothing to train." in out
    assert "vitals-triage: champion is version 1; nothing to train." in out
    table = [
        line.split() for line in out.splitlines() if line.startswith(("cxr-findings ", "vitals-triage "))
    ]
    assert [row[:3] for row in table] == [["cxr-findings", "1", "kept"], ["vitals-triage", "1", "kept"]]
    for name in ("cxr-findings", "vitals-triage"):
        assert json.loads((at_home / "models" / name / "aliases.json").read_text()) == {"champion": "1"}
        assert (at_home / "models" / name / "1" / "model.onnx").is_file()


def test_token_issue_prints_a_verifiable_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DXASSIST_HOME", str(tmp_path / "home"))
    assert main(["token", "issue", "--subject", "reader-1", "--role", "radiologist", "--ttl", "600"]) == 0
    token = capsys.readouterr().out.strip()

    from inference.config import get_settings
    from inference.security import verify_token

    principal = verify_token(get_settings(), token)
    assert principal.role == "radiologist"
    assert main(["token", "issue", "--subject", "reader-1", "--role", "janitor"]) == 2
    assert "Unknown role" in capsys.readouterr().err


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["registry", "delete", "cxr-findings"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_first_champion_s_comparison_says_there_is_no_champion_not_nan(
    tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The OOD floor holds for a first champion too; its row had 'nan' in the champion's column."""
    from _cli_home import FINDINGS, register
    from tiny_models import build_imaging_onnx

    home = make_home(tmp_path / "home", migrated_store)
    monkeypatch.setenv("DXASSIST_HOME", str(home))
    figures = {f"val_auroc_{f}": 0.90 for f in FINDINGS} | {"ood_test_pass_rate": 0.99}
    register(registry_for(home), "cxr-findings", build_imaging_onnx(tmp_path / "cxr.onnx", seed=1), figures)

    assert main(["registry", "promote", "cxr-findings", "1"]) == 0

    out = capsys.readouterr().out
    assert "nan" not in out.lower()
    row = next(line for line in out.splitlines() if line.startswith("ood_test_pass_rate"))
    assert row.split() == ["ood_test_pass_rate", "no", "champion", "0.9900", "ok"]
