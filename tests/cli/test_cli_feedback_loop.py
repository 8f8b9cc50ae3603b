"""The feedback loop end to end, through the API and the CLI, on the seed studies.

analyse (POST /v1/studies) -> readers' verdicts (POST .../feedback) -> `dxassist export-training-set`
-> `dxassist train imaging --dataset dxassist-export --register` (tiny epochs) -> the new challenger is
shadow-scored on live studies -> `dxassist registry compare` -> `dxassist registry promote` (the gate
requires shadow-scored studies and readers' verdicts) -> `dxassist registry rollback`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from _cli_home import make_home, registry_for
from _dxassist_cli import DXASSIST, dxassist_env
from tiny_models import build_imaging_onnx, build_triage_onnx

import model_registry
from benchmarks._files import as_new_study
from inference.config import Settings
from inference.record import Record, ShadowResults, TrainingInputs
from inference.security import issue_token

SEEDS = Path(__file__).resolve().parents[2] / "seeds" / "studies"
FRONTAL = sorted(p for p in SEEDS.glob("*.dcm") if "_ll_" not in p.name)
COPIES = 8  # 5 frontal seeds x 8 patients: enough rows for a train/validation/test split
TINY = {
    "input_size": 32,
    "widths": [8, 8, 16, 16],
    "epochs": 1,
    "batch_size": 16,
    "n_boot": 20,
    "ood_eval_per_kind": 2,
    "ood_contrast_laterals": 4,
    "workers": 1,
    "threads": 1,
    "progress": False,
}


def _register(client: model_registry.RegistryClient, name: str, path: Path) -> None:
    client.log_and_register(
        name=name,
        onnx_path=path,
        params={"profile": "test"},
        metrics={},
        artifacts=None,
        model_card=f"# {name} (tiny test model)\n\nSynthetic; not for clinical use.\n",
        dataset="tiny-synthetic (tests)",
        parity_passed=True,
        parity_max_abs_diff=0.0,
        sha256=model_registry.sha256_file(path),
        git_commit="feedbeef",
    )


def _copy(seed: Path, patient: str) -> bytes:
    """A seed study as a new study of another patient (new UIDs; pixels untouched)."""
    return as_new_study(seed, patient_id=patient)


def _truth() -> dict[str, dict[str, bool]]:
    with (SEEDS / "labels.csv").open(newline="") as handle:
        return {
            row["file"]: {k: row[k] == "1" for k in row if k not in ("file", "split", "view")}
            for row in csv.DictReader(handle)
        }


def _cli(home: Path, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dxassist_env(home) | (extra or {})
    return subprocess.run([str(DXASSIST), *args], env=env, capture_output=True, text=True, timeout=900)


def _headers(settings: Settings, role: str, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, subject=subject, role=role, facility='F1')}"}


def _wait_shadow(settings: Settings, count: int) -> int:
    record = Record(settings.record_url)
    try:
        store = ShadowResults(record.sessions)
        deadline = time.monotonic() + 120
        while True:
            found = sum(v.pairs for v in store.versions(model_name="cxr-findings"))
            if found >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)
    finally:
        record.close()


def _split_every_seed_everywhere(export: Path) -> None:
    """Rewrite labels.csv's split column: per identical input, one validation and one test copy; the
    manifest's content digest is stamped again (training refuses an export whose files do not match it)."""
    import hashlib

    import numpy as np

    from training.data._adapters_export import content_digest

    path = export / "labels.csv"
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = list(reader.fieldnames or []), list(reader)
    seen: dict[str, int] = {}
    for row in rows:
        with np.load(export / row["file"]) as npz:
            key = hashlib.sha256(npz["tensor"].tobytes()).hexdigest()
        n = seen[key] = seen.get(key, -1) + 1
        row["split"] = {0: "val", 1: "test"}.get(n, "train")
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["content_sha256"] = content_digest(export)
    (export / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


@pytest.mark.timeout(1800)
def test_feedback_loop_from_seed_studies_to_a_promoted_challenger(
    tmp_path: Path, migrated_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    with warnings.catch_warnings():  # starlette's preference for httpx2 (the dev extra pins httpx)
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from inference.api import create_app

    home = make_home(tmp_path / "home", migrated_store)
    monkeypatch.setenv("DXASSIST_HOME", str(home))
    client = registry_for(home)
    _register(client, "cxr-findings", build_imaging_onnx(tmp_path / "cxr-1.onnx", input_size=64))
    client.promote("cxr-findings", 1)
    _register(client, "vitals-triage", build_triage_onnx(tmp_path / "triage-1.onnx"))
    client.promote("vitals-triage", 1)
    settings = Settings(home=home, model_watch_seconds=0, preprocess_workers=1)  # type: ignore[call-arg]
    truth = _truth()

    # 1. analyse the seed studies (as studies of 40 patients) and 2. give the readers' verdicts
    with TestClient(create_app(settings)) as api:
        pacs = _headers(settings, "pacs", "pacs-1")
        readers = [_headers(settings, "radiologist", f"dr-{n}") for n in ("a", "b")]
        results: list[tuple[str, dict[str, Any]]] = []
        for copy in range(COPIES):
            for seed in FRONTAL:
                blob = _copy(seed, f"LOOP-{copy:02d}-{seed.name[:2]}")
                response = api.post("/v1/studies", files=[("files", ("s.dcm", blob, "application/dicom"))],
                                    headers=pacs)  # fmt: skip
                assert response.status_code == 201, response.text
                results.append((seed.name, response.json()))
        for i, (name, result) in enumerate(results):
            verdicts = [{"code": code, "verdict": "correct", "correct_label": label}
                        for code, label in truth[name].items()]  # fmt: skip
            response = api.post(f"/v1/results/{result['result_id']}/feedback", json={"verdicts": verdicts},
                                headers=readers[0])  # fmt: skip
            assert response.status_code == 201, response.text
            if i % 10 == 0:  # a second reader who disagrees on one finding: a disagreement to export
                code = next(iter(truth[name]))
                second = [{"code": code, "verdict": "correct", "correct_label": not truth[name][code]}]
                response = api.post(f"/v1/results/{result['result_id']}/feedback",
                                    json={"verdicts": second}, headers=readers[1])  # fmt: skip
                assert response.status_code == 201, response.text
    record = Record(settings.record_url)
    try:
        assert TrainingInputs(record.sessions).count() == len(results)  # kept while consent allows
    finally:
        record.close()

    # 3. export through the CLI: a data set `train --dataset dxassist-export` reads directly
    export = tmp_path / "export"
    done = _cli(home, "export-training-set", "--out", str(export))
    assert done.returncode == 0, done.stderr
    assert "'dxassist-export'" in done.stdout
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["inputs"] == len(results) and manifest["reader_labels"] == 5 * len(results)
    assert manifest["disagreements"] == len(results[::10])
    rows = list(csv.DictReader((export / "labels.csv").open(newline="")))
    assert len(rows) == len(results) and all((export / r["file"]).is_file() for r in rows)
    assert {r["model_version"] for r in rows} == {"1"} and all(r["readers"] for r in rows)
    text = (export / "labels.csv").read_text() + (export / "verdicts.csv").read_text()
    assert "LOOP-" not in text and "dr-a" not in text  # no patient id, no reader name

    # The export draws its split per patient digest (keyed, so it differs between homes). The copies of one
    # seed are the same image, so a split that left a seed out of validation would put the OOD guard's
    # threshold below that seed's score and the gate's OOD floor would refuse the candidate by chance;
    # the engineer's split here puts every seed in every split.
    exported_digest = manifest["content_sha256"]
    _split_every_seed_everywhere(export)
    split_digest = json.loads((export / "manifest.json").read_text())["content_sha256"]
    assert split_digest != exported_digest  # the digest is of the content: a new split is new data

    config = tmp_path / "tiny.yaml"
    config.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in TINY.items()))
    # Training refuses an export whose files no longer match their manifest's digest.
    verdicts = (export / "verdicts.csv").read_bytes()
    (export / "verdicts.csv").write_bytes(verdicts + b"\r\n")
    done = _cli(home, "train", "imaging", "--dataset", "dxassist-export", "--data", str(export),
                "--config", str(config), "--out", str(tmp_path / "refused"))  # fmt: skip
    assert done.returncode != 0 and "do not match its manifest" in done.stderr, done.stderr[-3000:]
    (export / "verdicts.csv").write_bytes(verdicts)

    # 4. retrain on it (tiny epochs) and register the result as challenger
    done = _cli(home, "train", "imaging", "--dataset", "dxassist-export", "--data", str(export),
                "--config", str(config), "--out", str(tmp_path / "run"), "--register")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "as challenger" in done.stdout
    challenger = client.get_version("cxr-findings", 2)
    assert "challenger" in challenger.aliases
    run = client.mlflow_client.get_run(challenger.run_id)
    assert run.data.metrics["reader_labels"] == 5 * len(results)  # the run records the readers' labels
    # The version names the content it learned from, and the gate compares by it.
    assert challenger.dataset_digest == split_digest == challenger.tags["dataset_sha256"]
    # Against a version of the export as first written (same name, other split), the gate says so.
    as_exported = dataclasses.replace(challenger, version="9", dataset_digest=exported_digest)
    assert "content sha256" in model_registry.evaluate_gate(challenger, as_exported).reason
    assert "different data sets" not in model_registry.evaluate_gate(challenger, challenger).reason

    # 5. the challenger shadow-scores live studies beside the champion
    with TestClient(create_app(settings)) as api:
        pacs = _headers(settings, "pacs", "pacs-1")
        live = []
        for seed in FRONTAL * 2:
            blob = _copy(seed, f"LIVE-{uuid.uuid4().hex[:8]}")
            response = api.post("/v1/studies", files=[("files", ("s.dcm", blob, "application/dicom"))],
                                headers=pacs)  # fmt: skip
            assert response.status_code == 201, response.text
            assert response.json()["model"]["version"] == "1"
            live.append(response.json())
        assert _wait_shadow(settings, len(live)) == len(live)
        for result in live[:4]:
            response = api.post(f"/v1/results/{result['result_id']}/feedback",
                                json={"verdicts": [{"code": "nodule", "verdict": "agree"}]},
                                headers=_headers(settings, "radiologist", "dr-a"))  # fmt: skip
            assert response.status_code == 201

    # 6. compare
    done = _cli(home, "registry", "compare", "cxr-findings")
    assert done.returncode == 0, done.stderr
    assert f"champion version 1 vs challenger version 2 on {len(live)} input(s)" in done.stdout
    assert "KAPPA" in done.stdout and "CHALLENGER SENS" in done.stdout

    # 7. promote: the gate wants more live evidence than there is, then gets it
    strict = {"DXASSIST_GATE_MIN_SHADOW_STUDIES": "50", "DXASSIST_GATE_MIN_READER_VERDICTS": "2"}
    done = _cli(home, "registry", "promote", "cxr-findings", "2", extra=strict)
    assert done.returncode == 1 and f"shadow-scored on {len(live)} live input(s)" in done.stderr
    fair = {"DXASSIST_GATE_MIN_SHADOW_STUDIES": str(len(live)), "DXASSIST_GATE_MIN_READER_VERDICTS": "4"}
    done = _cli(home, "registry", "promote", "cxr-findings", "2", extra=fair)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shadow_studies" in done.stdout and "reader_verdicts" in done.stdout
    assert client.aliases("cxr-findings")["champion"] == "2"
    # After the promotion the comparison is still there (the record keeps the pair).
    done = _cli(home, "registry", "compare", "cxr-findings")
    assert done.returncode == 0 and "challenger version 2" in done.stdout

    # 8. roll back
    done = _cli(home, "registry", "rollback", "cxr-findings")
    assert done.returncode == 0, done.stderr
    assert client.aliases("cxr-findings")["champion"] == "1"


def test_training_on_the_long_format_labels_says_which_export_to_use(tmp_path: Path) -> None:
    from inference._cli_commands import LABEL_COLUMNS

    folder = tmp_path / "old-export"
    folder.mkdir()
    with (folder / "labels.csv").open("w", newline="") as handle:
        csv.DictWriter(handle, fieldnames=list(LABEL_COLUMNS)).writeheader()
    done = _cli(tmp_path / "home", "train", "imaging", "--dataset", "dicom-folder", "--data", str(folder))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "--dataset dxassist-export" in done.stderr and "no 'file' column" in done.stderr
