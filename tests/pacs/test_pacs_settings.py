"""Destinations and retry delays as an integrator configures them (no PACS needed)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from inference.config import Settings
from inference.delivery import backoff


def test_destinations_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DXASSIST_DESTINATIONS",
        json.dumps(
            [
                {"name": "pacs", "kind": "dimse", "host": "10.0.0.5", "port": 104, "ae_title": "PACS"},
                {"name": "vna", "kind": "stowrs", "url": "https://vna.example/dicom-web", "token": "s3cret"},
            ]
        ),
    )
    monkeypatch.setenv("DXASSIST_DIMSE_ALLOWED_AETS", '["ORTHANC"]')
    settings = Settings()
    assert [d.name for d in settings.delivery.destinations] == ["pacs", "vna"]
    assert settings.dimse.dimse_allowed_aets == ["ORTHANC"]
    assert "s3cret" not in repr(settings.delivery.destinations[1])  # secrets never print
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"name": "pacs", "kind": "dimse", "host": "h", "port": 104}, "needs host, port and ae_title"),
        ({"name": "pacs", "kind": "dimse", "host": "h", "port": 104, "ae_title": "A" * 17}, "AE title"),
        ({"name": "vna", "kind": "stowrs", "url": "ftp://x"}, "http:// or https://"),
        ({"name": "bad name!", "kind": "stowrs", "url": "http://x"}, "Destination name"),
    ],
)
def test_an_incomplete_destination_is_refused_with_a_reason(entry: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        Settings(destinations=[entry])


def test_retry_delays_double_up_to_the_cap() -> None:
    assert [backoff(n, base=2.0, cap=60.0) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
