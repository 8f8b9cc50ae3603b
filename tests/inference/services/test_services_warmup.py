"""The warm-up a process runs when it starts: the imaging path once on a synthetic image, nothing kept."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from sqlalchemy import create_engine, text

from inference.config import Settings
from inference.dicom import Limits, read_study
from inference.services import _engines, _warmup, open_context
from inference.services._warmup import WarmUp, synthetic_radiograph, warm_up

ROOT = Path(__file__).resolve().parents[3]


def _settings(home: Path) -> Settings:
    settings = Settings(home=home, database_url=None, mlflow_tracking_uri=None, model_watch_seconds=0)
    tiny_models.seed_both(settings.model_cache, home / "build")
    return settings


def test_the_synthetic_radiograph_is_a_frontal_chest_film_the_decoder_accepts_with_no_patient_data() -> None:
    study = read_study(
        [synthetic_radiograph()], limits=Limits.from_settings(Settings().limits), target_size=64
    )
    image = study.primary
    assert (image.rows, image.columns) == (2048, 2048)
    assert (image.modality, image.view_position, image.transfer_syntax_uid) == (
        "DX",
        "PA",
        "1.2.840.10008.1.2.1",
    )
    assert image.patient.patient_id == "WARM-UP"
    assert image.patient.name is None and image.patient.birth_date is None and image.patient.issuer is None
    # Not one flat grey: the decoder's plausibility checks passed, and the picture has a range of values.
    assert int(image.pixels.max()) - int(image.pixels.min()) > 1000
    # Random UIDs: two warm-ups never look like one study sent twice.
    assert read_study(
        [synthetic_radiograph()], limits=Limits.from_settings(Settings().limits)
    ).study_instance_uid != (study.study_instance_uid)


def test_a_context_is_warmed_with_the_served_model_before_it_is_handed_over_and_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    seen: list[WarmUp | None] = []

    async def recorded(ctx: Any) -> WarmUp | None:
        done = await warm_up(ctx)
        seen.append(done)
        return done

    monkeypatch.setattr(_engines, "warm_up", recorded)

    async def main() -> None:
        async with open_context(settings, fetch=tiny_models.cache_fetcher(settings.model_cache)):
            assert len(seen) == 1  # done before the context is handed to the server

    asyncio.run(main())
    [done] = seen
    assert done is not None and done.imaging and done.seconds > 0
    engine = create_engine(settings.record_url)
    with engine.connect() as connection:
        for table in ("patients", "studies", "results", "renderings", "training_inputs", "outbox"):
            assert connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one() == 0, table
        actions = connection.execute(text("SELECT DISTINCT action FROM audit_events")).scalars().all()
    engine.dispose()
    assert actions and all(action.startswith("model:") for action in actions)  # models put into service only


def test_without_an_imaging_model_the_rest_is_warmed_and_a_failure_never_stops_a_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    fetch = tiny_models.cache_fetcher(settings.model_cache)

    def triage_only(name: str, alias: str) -> Any:
        if name == tiny_models.IMAGING_NAME:
            raise FileNotFoundError("no imaging model in this cache")
        return fetch(name, alias)

    async def without_model() -> WarmUp | None:
        async with open_context(settings, fetch=triage_only) as ctx:
            return await warm_up(ctx)

    done = asyncio.run(without_model())
    assert done is not None and not done.imaging

    def broken(*_args: Any, **_kwargs: Any) -> bool:
        raise RuntimeError("a drawing library failed")

    monkeypatch.setattr(_warmup, "run_imaging_path", broken)

    async def failing() -> tuple[WarmUp | None, bool]:
        async with open_context(settings, fetch=fetch) as ctx:  # starts all the same
            return await warm_up(ctx), ctx.host.ready

    assert asyncio.run(failing()) == (None, True)


def test_a_fresh_process_has_loaded_the_decoders_and_drawing_code_before_its_first_request(
    tmp_path: Path,
) -> None:
    """What the first study after a start would otherwise wait for (most of a second on 2 cores): pydicom's
    pixel decoders, the JPEG and PNG writers; and the SR writer and DICOM network libraries, imported once
    in one thread. Checked in a new interpreter, where nothing was imported yet."""
    _settings(tmp_path)  # the models the child process serves
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        import tiny_models
        from inference.config import Settings
        from inference.services import open_context

        WATCHED = ("pydicom.pixels.decoders.base", "simplejpeg", "isal.isal_zlib", "PIL.Jpeg2KImagePlugin",
                   "highdicom.sr", "pydicom.sr.codedict", "pynetdicom")
        settings = Settings(home={str(tmp_path)!r}, database_url=None, mlflow_tracking_uri=None,
                            model_watch_seconds=0)
        before = [name for name in WATCHED if name in sys.modules]

        async def main():
            async with open_context(settings, fetch=tiny_models.cache_fetcher(settings.model_cache)):
                return [name for name in WATCHED if name in sys.modules]

        print(json.dumps({{"before": before, "after": asyncio.run(main())}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["before"] == []
    assert loaded["after"] == [
        "pydicom.pixels.decoders.base",
        "simplejpeg",
        "isal.isal_zlib",
        "PIL.Jpeg2KImagePlugin",
        "highdicom.sr",
        "pydicom.sr.codedict",
        "pynetdicom",
    ]


def test_every_dicom_or_drawing_library_imported_inside_a_function_is_imported_by_the_warm_up() -> None:
    """Two threads importing pydicom or highdicom for the first time at once can see it half-initialised
    (``partially initialized module 'pydicom'``): what the server imports inside functions, which run on
    several threads, the warm-up imports first, in one. A new deferred import must join the list."""
    import ast

    watched = {"PIL", "highdicom", "httpx", "isal", "pydicom", "pynetdicom", "simplejpeg"}
    listed = set(_warmup.DEFERRED_IMPORTS)
    covered = listed | {
        name.rsplit(".", depth)[0] for name in listed for depth in range(1, name.count(".") + 1)
    }
    missing: set[str] = set()
    for path in sorted((ROOT / "inference").rglob("*.py")):
        for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module]
                    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    else []
                )
                missing |= {n for n in names if n.split(".")[0] in watched and n not in covered}
    assert not missing, sorted(missing)
