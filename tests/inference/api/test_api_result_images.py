"""GET /v1/results/{id}/image.png and heatmaps: drawn on demand, authorised like the result, audited."""

from __future__ import annotations

import io
import uuid

import numpy as np
from _api_dicom import chest_dicom
from _api_env import Env, TestClient, new_study_uid
from _damage import overwrite_rendering, stored_rendering, without_map
from PIL import Image

from inference.analysis import Rendering, StoredRendering
from inference.record import Record

VITALS = {"patient": {"identifier": "IPP-IMG-1"}, "respiratory_rate": 18, "heart_rate": 80}


def _study(client: TestClient, env: Env) -> dict:
    study = new_study_uid()
    files = [("files", ("a.dcm", chest_dicom(study=study, sop=f"{study}.1", blob=True), "application/dicom"))]
    response = client.post("/v1/studies", files=files, headers=env.headers("pacs", facility="F1"))
    assert response.status_code == 201, response.text
    return dict(response.json())


def _stored(env: Env, result_id: str) -> StoredRendering:
    return stored_rendering(env.settings.record_url, result_id)


def _overwrite_rendering(env: Env, result_id: str, **columns: bytes) -> None:
    overwrite_rendering(env.settings.record_url, result_id, **columns)


def _accesses(env: Env, patient_id: str, subject: str) -> list[tuple[str, str]]:
    """``(resource_type, outcome)`` of the audit entries of ``subject`` about the patient, sorted."""
    record = Record(env.settings.record_url)
    try:
        events = record.audit.events(patient_id=patient_id, limit=200)
    finally:
        record.close()
    return sorted((e["resource_type"], e["outcome"]) for e in events if e["subject"] == subject)


def _png(response) -> Image.Image:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "private, no-store"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    assert image.format == "PNG"
    return image


def test_display_image_heat_layer_and_overlay_share_one_geometry(client: TestClient, env: Env) -> None:
    result = _study(client, env)
    rid = result["result_id"]
    reader = env.headers("radiologist", facility="F1")
    image = _png(client.get(f"/v1/results/{rid}/image.png", headers=reader))
    assert image.mode == "L" and image.size == (128, 128)
    grey = np.asarray(image, dtype=np.float64)
    assert grey[40:70, 40:70].mean() > grey[100:, 100:].mean() + 100  # the bright square is bright

    finding = next(f for f in result["findings"] if f["positive"])
    layer = _png(client.get(f"{finding['heatmap']}?layer=1", headers=reader))
    assert layer.mode == "RGBA" and layer.size == image.size
    alpha = np.asarray(layer)[..., 3]
    x0, y0, x1, y1 = finding["box"]
    assert alpha[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].max() > 64  # heat shows inside the box
    assert alpha[y1 + 8 :, x1 + 8 :].max() == 0  # and nothing far from it: the radiograph stays readable

    overlay = _png(client.get(finding["heatmap"], headers=reader))
    assert overlay.mode == "RGB" and overlay.size == image.size
    # The layer laid over the image is the overlay (same colours, same opacities, same box).
    composed = Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")
    difference = np.abs(np.asarray(composed, dtype=np.int16) - np.asarray(overlay, dtype=np.int16))
    assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 2

    # Drawn once, then served from the cache: the same bytes again.
    again = client.get(finding["heatmap"], headers=reader)
    assert again.content == client.get(finding["heatmap"], headers=reader).content


def test_pictures_drawn_one_after_another_are_those_drawn_from_the_record(
    client: TestClient, env: Env
) -> None:
    # A reader opens the image, then flips through the findings (overlay and heat layer): the decoded
    # rendering is reused between them, and every picture is the one drawn afresh from the record.
    result = _study(client, env)
    rid = result["result_id"]
    reader = env.headers("radiologist", facility="F1")
    positives = [f for f in result["findings"] if f["positive"]]
    assert len(positives) >= 2
    image = client.get(f"/v1/results/{rid}/image.png", headers=reader)
    got = {
        f["code"]: (
            client.get(f["heatmap"], headers=reader),
            client.get(f"{f['heatmap']}?layer=1", headers=reader),
        )
        for f in positives
    }
    fresh = Rendering.from_stored(_stored(env, rid))
    assert _png(image).mode == "L" and image.content == fresh.display_png()
    for code, (overlay, layer) in got.items():
        assert _png(overlay).mode == "RGB" and overlay.content == fresh.overlay_png(code), code
        assert _png(layer).mode == "RGBA" and layer.content == fresh.heat_layer_png(code), code


def test_a_first_picture_drawn_while_its_rendering_is_decoded_is_the_same_picture(
    client: TestClient, env: Env
) -> None:
    # The first picture of a result makes the finding's heat while the stored JPEG is decoded on
    # another thread: an overlay, or a heat layer, asked for first is the one drawn from the record.
    reader = env.headers("radiologist", facility="F1")
    for layer in (False, True):
        result = _study(client, env)
        finding = next(f for f in result["findings"] if f["positive"])
        got = client.get(f"{finding['heatmap']}{'?layer=1' if layer else ''}", headers=reader)
        fresh = Rendering.from_stored(_stored(env, result["result_id"]))
        expected = fresh.heat_layer_png(finding["code"]) if layer else fresh.overlay_png(finding["code"])
        assert _png(got).mode == ("RGBA" if layer else "RGB") and got.content == expected


def test_pictures_are_refused_like_the_result_itself_and_audited(client: TestClient, env: Env) -> None:
    result = _study(client, env)
    rid, patient_id = result["result_id"], result["patient"]["id"]
    code = next(f["code"] for f in result["findings"] if f["positive"])
    paths = [f"/v1/results/{rid}/image.png", f"/v1/results/{rid}/heatmaps/{code}.png"]
    paths.append(paths[1] + "?layer=1")
    subject = f"reader-{uuid.uuid4().hex[:6]}"
    for path in paths:
        assert client.get(path).status_code == 401
        assert client.get(path, headers=env.headers("auditor")).status_code == 403
        denied = client.get(path, headers=env.headers("radiologist", facility="F2"))
        assert denied.status_code == 404 and denied.json()["error"]["code"] == "not_found"
        assert (
            client.get(path, headers=env.headers("radiologist", facility="F1", subject=subject)).status_code
            == 200
        )
    record = Record(env.settings.record_url)
    try:
        events = record.audit.events(patient_id=patient_id, limit=200)
    finally:
        record.close()
    mine = [(e["resource_type"], e["outcome"]) for e in events if e["subject"] == subject]
    assert sorted(mine) == [("Heatmap", "success"), ("Heatmap", "success"), ("Image", "success")]
    assert ("results:read", "F2", "denied") in {(e["action"], e["facility"], e["outcome"]) for e in events}


def test_a_picture_whose_access_cannot_be_audited_is_not_answered(client: TestClient, env: Env) -> None:
    # The overlay is drawn while the access is audited: when the audit entry cannot be written, the
    # request fails and the picture is not answered; once it can, the same picture is.
    from sqlalchemy import create_engine, text

    result = _study(client, env)
    finding = next(f for f in result["findings"] if f["positive"])
    subject = f"unaudited-{uuid.uuid4().hex[:6]}"
    reader = env.headers("radiologist", facility="F1", subject=subject)
    engine = create_engine(env.settings.record_url)
    refuse = (
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
        f"WHEN NEW.subject = '{subject}' BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
    )
    try:
        with engine.begin() as connection:
            connection.execute(text(refuse))
        for path in (finding["heatmap"], f"{finding['heatmap']}?layer=1"):
            refused = client.get(path, headers=reader)
            assert refused.status_code >= 500 and refused.headers["content-type"] != "image/png"
            assert "error" in refused.json()
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER IF EXISTS refuse_audit"))
        engine.dispose()
    _png(client.get(finding["heatmap"], headers=reader))  # drawn while refused, answered once audited


def test_a_damaged_stored_rendering_is_said_plainly_and_audited_as_a_failure(
    client: TestClient, env: Env
) -> None:
    # The record's copy of the display rendering is damaged (a disk fault, a bad restore): no picture can
    # be drawn from it. Each request gets the contract's error shape naming the cause, the access is
    # audited as a failure (never as a picture seen), and the result itself still reads.
    result = _study(client, env)
    rid, patient_id = result["result_id"], result["patient"]["id"]
    finding = next(f for f in result["findings"] if f["positive"])
    _overwrite_rendering(env, rid, display=b"\xff\xd8 not a JPEG any more")
    subject = f"reader-{uuid.uuid4().hex[:6]}"
    reader = env.headers("radiologist", facility="F1", subject=subject)
    for path in (finding["heatmap"], f"{finding['heatmap']}?layer=1", f"/v1/results/{rid}/image.png"):
        response = client.get(path, headers=reader)
        assert response.status_code == 500, response.text
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert error["code"] == "rendering_unreadable" and "cannot be read" in error["message"]
    assert client.get(f"/v1/results/{rid}", headers=reader).status_code == 200  # the result still reads
    mine = _accesses(env, patient_id, subject)
    assert ("Heatmap", "success") not in mine and ("Image", "success") not in mine
    assert mine.count(("Heatmap", "failure")) == 2 and mine.count(("Image", "failure")) == 1


def test_one_damaged_map_fails_only_its_own_pictures_even_once_the_result_is_decoded(
    client: TestClient, env: Env
) -> None:
    # One finding's stored map is damaged, the others and the display rendering are intact. After a
    # first picture of the result (which decodes it and reads every map), the other finding's pictures
    # are still drawn, and the damaged one's are refused plainly and audited as failures, never as seen.
    result = _study(client, env)
    rid, patient_id = result["result_id"], result["patient"]["id"]
    good, bad = [f for f in result["findings"] if f["positive"]][:2]
    _overwrite_rendering(env, rid, cams=without_map(_stored(env, rid).cams, bad["code"]))
    subject = f"reader-{uuid.uuid4().hex[:6]}"
    reader = env.headers("radiologist", facility="F1", subject=subject)
    assert _png(client.get(good["heatmap"], headers=reader)).mode == "RGB"  # decodes the result
    for path in (bad["heatmap"], f"{bad['heatmap']}?layer=1"):
        response = client.get(path, headers=reader)
        assert response.status_code == 500 and response.json()["error"]["code"] == "rendering_unreadable"
    assert _png(client.get(f"{good['heatmap']}?layer=1", headers=reader)).mode == "RGBA"
    assert _png(client.get(f"/v1/results/{rid}/image.png", headers=reader)).mode == "L"
    mine = _accesses(env, patient_id, subject)
    assert mine == [("Heatmap", "failure")] * 2 + [("Heatmap", "success")] * 2 + [("Image", "success")]


def test_stored_maps_that_are_no_archive_leave_the_image_and_fail_the_heatmaps_plainly(
    client: TestClient, env: Env
) -> None:
    # The record's copy of the maps is damaged as a whole (not an archive any more): the display image
    # is still drawn; each heatmap is refused plainly (500 rendering_unreadable, audited as a failure),
    # never answered as a missing picture (404) or an internal error.
    result = _study(client, env)
    rid, patient_id = result["result_id"], result["patient"]["id"]
    finding = next(f for f in result["findings"] if f["positive"])
    _overwrite_rendering(env, rid, cams=b"PK not an archive any more")
    subject = f"reader-{uuid.uuid4().hex[:6]}"
    reader = env.headers("radiologist", facility="F1", subject=subject)
    assert _png(client.get(f"/v1/results/{rid}/image.png", headers=reader)).mode == "L"
    for path in (finding["heatmap"], f"{finding['heatmap']}?layer=1"):
        response = client.get(path, headers=reader)
        assert response.status_code == 500 and response.json()["error"]["code"] == "rendering_unreadable"
    assert _accesses(env, patient_id, subject) == [("Heatmap", "failure")] * 2 + [("Image", "success")]


def test_missing_pictures_are_404_in_the_error_shape(client: TestClient, env: Env) -> None:
    result = _study(client, env)
    rid = result["result_id"]
    reader = env.headers("radiologist", facility="F1")
    negative = [f["code"] for f in result["findings"] if not f["positive"]]
    for code in negative[:1]:
        for suffix in ("", "?layer=1"):
            response = client.get(f"/v1/results/{rid}/heatmaps/{code}.png{suffix}", headers=reader)
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    unknown = client.get(f"/v1/results/{uuid.uuid4()}/image.png", headers=reader)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    triage = client.post("/v1/vitals", json=VITALS, headers=env.headers("clinician", facility="F1"))
    assert triage.status_code in (200, 201), triage.text
    image = client.get(f"/v1/results/{triage.json()['result_id']}/image.png", headers=env.headers("admin"))
    assert image.status_code == 404 and image.json()["error"]["code"] == "not_found"
    bad = client.get(f"/v1/results/{rid}/heatmaps/{negative[0]}.png?layer=maybe", headers=reader)
    assert bad.status_code in (400, 422) and "error" in bad.json()


def test_metrics_time_every_stage_with_the_model_version(client: TestClient, env: Env) -> None:
    result = _study(client, env)
    code = next(f["code"] for f in result["findings"] if f["positive"])
    reader = env.headers("radiologist", facility="F1")
    assert (
        client.get(f"/v1/results/{result['result_id']}/heatmaps/{code}.png", headers=reader).status_code
        == 200
    )
    metrics = client.get("/metrics", headers=env.headers("admin")).text
    for stage in ("decode", "preprocess", "inference", "explain", "record_commit", "overlay"):
        line = f'dxassist_stage_seconds_count{{model="cxr-findings",stage="{stage}",version="1"}}'
        assert line in metrics, stage
