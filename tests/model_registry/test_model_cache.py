"""The local model cache: download, sha256 verification, offline fallback."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from _registry_testkit import Store

from model_registry import (
    IntegrityError,
    ModelCache,
    ModelUnavailable,
    RegistryClient,
    fetch,
    sha256_file,
)


@pytest.fixture(scope="module")
def champion_store(store: Store) -> Store:
    """A store where cxr-findings has champion version 1 and challenger version 2."""
    store.register("cxr-findings")
    store.client.promote("cxr-findings", 1)
    store.register("cxr-findings")
    return store


def test_fetch_downloads_and_verifies_the_champion(champion_store: Store, tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "models")

    local = cache.fetch("cxr-findings", "champion", client=champion_store.client)

    assert local.version == "1"
    assert local.path == tmp_path / "models" / "cxr-findings" / "1" / "model.onnx"
    assert sha256_file(local.path) == local.sha256
    assert local.sha256 == champion_store.client.get_version("cxr-findings", 1).sha256
    assert not local.offline
    manifest = json.loads((local.path.parent / "manifest.json").read_text())
    assert manifest == {
        "name": "cxr-findings",
        "version": "1",
        "sha256": local.sha256,
        "aliases": ["champion"],
        "run_id": local.run_id,
        "source": "registry",
    }
    assert json.loads((tmp_path / "models" / "cxr-findings" / "aliases.json").read_text()) == {
        "champion": "1"
    }
    # The challenger is fetched next to it; both aliases are then remembered.
    assert cache.fetch("cxr-findings", "challenger", client=champion_store.client).version == "2"
    aliases = json.loads((tmp_path / "models" / "cxr-findings" / "aliases.json").read_text())
    assert aliases == {"champion": "1", "challenger": "2"}
    assert cache.resolve_cached("cxr-findings", "champion").version == "1"


# A retry loop against the unreachable registry would hold the caller: the timeout fails it.
@pytest.mark.timeout(120)
def test_fetch_falls_back_to_the_cache_when_mlflow_is_down(
    champion_store: Store,
    tmp_path: Path,
    unreachable_client: Callable[[], RegistryClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = ModelCache(tmp_path / "models")
    online = cache.fetch("cxr-findings", "champion", client=champion_store.client)

    with caplog.at_level(logging.WARNING, logger="model_registry"):
        offline = cache.fetch("cxr-findings", "champion", client=unreachable_client())

    assert offline.offline
    assert (offline.version, offline.sha256, offline.path) == (online.version, online.sha256, online.path)
    assert "Using the cached cxr-findings version 1" in caplog.text
    assert "could not be reached" in caplog.text
    assert cache.fetch("cxr-findings", "champion", client=None).version == "1"


def test_nothing_cached_and_registry_down_is_unavailable(
    tmp_path: Path, unreachable_client: Callable[[], RegistryClient]
) -> None:
    cache = ModelCache(tmp_path / "models")
    with pytest.raises(ModelUnavailable, match="holds no copy"):
        cache.fetch("cxr-findings", "champion", client=unreachable_client())
    with pytest.raises(ModelUnavailable):
        cache.resolve_cached("cxr-findings", "champion")


def test_tampered_cached_file_is_refused_offline_and_deleted(champion_store: Store, tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "models")
    local = cache.fetch("cxr-findings", "champion", client=champion_store.client)
    local.path.write_bytes(local.path.read_bytes() + b"\x00")

    with pytest.raises(IntegrityError, match="was deleted"):
        cache.fetch("cxr-findings", "champion", client=None)
    assert not local.path.exists()


def test_tampered_cached_file_is_replaced_when_the_registry_answers(
    champion_store: Store, tmp_path: Path
) -> None:
    cache = ModelCache(tmp_path / "models")
    local = cache.fetch("cxr-findings", "champion", client=champion_store.client)
    local.path.write_bytes(b"not an onnx model")

    again = cache.fetch("cxr-findings", "champion", client=champion_store.client)

    assert sha256_file(again.path) == local.sha256


def test_resolve_cached_notices_tampering(champion_store: Store, tmp_path: Path) -> None:
    cache = ModelCache(tmp_path / "models")
    local = cache.fetch("cxr-findings", "champion", client=champion_store.client)
    assert cache.resolve_cached("cxr-findings", "champion").sha256 == local.sha256
    local.path.write_bytes(b"tampered")

    with pytest.raises(IntegrityError):
        cache.resolve_cached("cxr-findings", "champion")


def test_unknown_alias_in_an_answering_registry_is_unavailable(champion_store: Store, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="no 'canary' alias"):
        ModelCache(tmp_path / "models").fetch("cxr-findings", "canary", client=champion_store.client)


def test_fetch_with_settings_like_object(champion_store: Store, tmp_path: Path) -> None:
    class Settings:
        tracking_uri = champion_store.tracking_uri
        artifact_root = champion_store.artifact_root
        model_cache = tmp_path / "models"

    assert fetch("cxr-findings", "champion", Settings()).path.is_file()
