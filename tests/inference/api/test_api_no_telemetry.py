"""The API exports no telemetry of FastAPI's, whatever the host's environment asks for.

FastAPI 0.165 traces requests, records metrics and logs exceptions (messages and stack traces) through
OpenTelemetry whenever a provider is configured in the process, and adds OTLP exporters when
``FASTAPI_OTEL_AUTO_CONFIGURE=true``. Run in a fresh interpreter (an OpenTelemetry provider is set once
per process): a real SDK tracer provider with an in-memory exporter is installed globally, the environment
asks for automatic export, and a request that fails inside the app must leave no span behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tiny_models

_PROBE = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

from fastapi.testclient import TestClient
from inference.api import create_app
from inference.config import Settings

settings = Settings(home=sys.argv[1], database_url=None, mlflow_tracking_uri=None, model_watch_seconds=0)
with TestClient(create_app(settings)) as client:
    statuses = [
        client.get("/healthz").status_code,
        client.get("/fhir/Patient?identifier=PID-TELEMETRY-1").status_code,  # 401: no token
        client.post("/v1/studies", content=b"x", headers={"Content-Type": "text/plain"}).status_code,
    ]
provider.force_flush()
print(json.dumps({"statuses": statuses, "spans": [span.name for span in exporter.get_finished_spans()]}))
"""


def test_no_request_leaves_a_span_even_with_a_provider_and_auto_export_asked(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    tiny_models.seed_both(home / "models", tmp_path / "build")
    env = {
        **os.environ,
        "FASTAPI_OTEL_AUTO_CONFIGURE": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # discard port: nothing may try it
        "DXASSIST_HOME": str(home),
    }
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(home)], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["statuses"] == [200, 401, 401]
    assert seen["spans"] == []
    assert "PID-TELEMETRY-1" not in out.stdout + out.stderr
