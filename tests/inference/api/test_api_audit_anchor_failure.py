"""An audit head anchor that cannot be written is seen by the operator, not only in a log line.

The anchor (``audit/head.json``) is written by a thread of its own after each commit; when the write
fails (disk full, permission, a folder that is not one) the entries are committed to the record all the
same and the anchor stays behind the trail. ``/metrics`` counts each failed write and ``/readyz`` reports
``audit_anchor: false`` until a later write succeeds; the server stays in service (200): taking it out
would stop the commits that write the anchor again once the disk is fixed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import tiny_models
from _api_env import Env, TestClient, make_settings

from inference.api import create_app

_FAILURES = re.compile(r"^dxassist_audit_anchor_failures_total (\S+)$", re.MULTILINE)


def _failures(client: TestClient) -> float:
    found = _FAILURES.search(client.get("/metrics").text)
    assert found is not None, "the metric is exposed from the start"
    return float(found.group(1))


def _file_vitals(client: TestClient, env: Env, n: int) -> None:
    """A clinician files vital signs: the filing and its access are audited, so the anchor moves."""
    answer = client.post(
        "/v1/vitals",
        json={"patient": {"identifier": f"ANCHOR-{n}"}, "heart_rate": 80, "respiratory_rate": 16},
        headers=env.headers("clinician"),
    )
    assert answer.status_code == 201, answer.text


def test_a_failed_anchor_write_is_counted_and_reported_by_readyz_until_one_succeeds(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = make_settings(home)
    tiny_models.seed_both(settings.model_cache, tmp_path / "build")
    env = Env(home=home, settings=settings)
    app = create_app(settings)
    with TestClient(app) as client:
        anchor = app.state.ctx.record.anchor
        _file_vitals(client, env, 0)
        assert anchor.flush(timeout=60)
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["audit_anchor"] is True
        before = _failures(client)

        # The anchor's folder is a file now: no process, root included, can write audit/head.json.
        audit = home / "audit"
        shutil.rmtree(audit)
        audit.write_text("not a folder\n")
        _file_vitals(client, env, 1)
        assert anchor.flush(timeout=60)

        assert _failures(client) == before + 1
        ready = client.get("/readyz")
        body = ready.json()
        assert body["checks"]["audit_anchor"] is False
        # Reported, not required: the server keeps filing, and its commits write the anchor again.
        assert ready.status_code == 200 and body["status"] == "ok"
        assert {k: v for k, v in body["checks"].items() if k != "audit_anchor"} == {
            "models": True,
            "database": True,
            "revocations": True,
        }

        # The folder is back: the next commit's anchoring writes the anchor, and readiness says so.
        audit.unlink()
        audit.mkdir()
        _file_vitals(client, env, 2)
        assert anchor.flush(timeout=60)
        assert client.get("/readyz").json()["checks"]["audit_anchor"] is True
        assert _failures(client) == before + 1
        report = app.state.ctx.record.audit.verify()
        assert report.ok and report.anchored_seq == report.head_seq
