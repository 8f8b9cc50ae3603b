"""ModelCache: the local copy of served models, so a server starts while MLflow is down.

Layout (see docs/internals.md)::

    <cache_dir>/<name>/<version>/model.onnx
    <cache_dir>/<name>/<version>/manifest.json   name, version, sha256, aliases, run_id, source
    <cache_dir>/<name>/aliases.json              last known alias -> version, e.g. {"champion": "3"}
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_registry._errors import (
    IntegrityError,
    ModelUnavailable,
    NotFound,
    RegistryError,
    RegistryUnreachable,
)
from model_registry._hashing import sha256_cached, sha256_file
from model_registry._mlflow import check_alias, check_name, check_version
from model_registry._types import LocalModel

if TYPE_CHECKING:
    from model_registry._client import RegistryClient

_log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
ALIASES_FILE = "aliases.json"


class ModelCache:
    """Downloads registered ONNX files into ``cache_dir`` and serves them back, sha256 verified.

    Args:
        cache_dir: Root of the cache (``DXASSIST_HOME/models`` by default in the product).
    """

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)

    def fetch(self, name: str, alias: str, *, client: RegistryClient | None) -> LocalModel:
        """Return the model ``alias`` points at, downloading it if the cache lacks it.

        With a client that answers: resolve the alias, download ``model.onnx`` unless the cached copy
        already matches the version's ``sha256`` tag, write ``manifest.json`` and update
        ``aliases.json``. Without a client, or when the registry cannot be reached (or no longer knows
        the model), fall back to the last alias mapping in the cache, verifying the file again, and log
        a warning.

        Raises:
            ModelUnavailable: The registry has no such alias (it answered), or it cannot be asked and
                the cache holds nothing for ``name``/``alias``.
            IntegrityError: A downloaded or cached file does not match its recorded sha256 (the bad
                file is deleted).
        """
        check_name(name)
        check_alias(alias)
        if client is None:
            return self._offline(name, alias, "no registry client was configured")
        try:
            aliases = client.aliases(name)
        except RegistryUnreachable as e:
            return self._offline(name, alias, str(e))
        except NotFound:
            # An empty or replaced store (e.g. a fresh mlflow.db) must not stop a server whose cache
            # holds a verified model.
            return self._offline(name, alias, f"the registry holds no model called {name}")
        version = aliases.get(alias)
        if version is None:
            raise ModelUnavailable(
                f"The registry has no '{alias}' alias for {name}; known aliases: "
                f"{', '.join(sorted(aliases)) or 'none'}. Register and promote a version first."
            )
        try:
            return self._fetch_version(client, name, version, aliases)
        except RegistryUnreachable as e:
            return self._offline(name, alias, str(e))

    def fetch_version(self, name: str, version: str, *, client: RegistryClient | None) -> LocalModel:
        """Return version ``version`` of ``name`` (not what an alias points at), downloading it if needed.

        Used to score with a given version, e.g. re-scoring an archive after a promotion. Without a
        client, or when the registry cannot be reached, the cached copy is used (verified again).

        Raises:
            ModelUnavailable: The registry has no such version, or it cannot be asked and the cache
                holds no copy of it.
            IntegrityError: A downloaded or cached file does not match its recorded sha256.
        """
        check_name(name)
        if not version.isdigit():
            raise ModelUnavailable(f"Model versions are whole numbers; {version!r} is not one.")
        if client is not None:
            try:
                aliases = client.aliases(name)
                client.get_version(name, version)
            except NotFound as e:
                raise ModelUnavailable(f"The registry has no version {version} of {name}.") from e
            except RegistryUnreachable as e:
                _log.warning("Using the cached %s version %s because %s.", name, version, str(e).rstrip("."))
            else:
                return self._fetch_version(client, name, version, aliases)
        if version not in self.cached_versions(name):
            raise ModelUnavailable(
                f"Version {version} of {name} is not in the local model cache and the registry cannot be "
                "asked; run once with the registry reachable."
            )
        return self._load_cached(name, version, quick=False)

    def resolve_cached(self, name: str, alias: str) -> LocalModel:
        """The cached model ``alias`` last pointed at, without asking the registry.

        Cheap enough to poll: two small JSON reads, and the file is re-hashed only when its size,
        mtime or inode changed.

        Raises:
            ModelUnavailable: Nothing is cached for ``name``/``alias``.
            IntegrityError: The cached file no longer matches its manifest (it is deleted).
        """
        check_name(name)
        check_alias(alias)
        version = self._read_aliases(name).get(alias)
        if version is None:
            raise ModelUnavailable(
                f"The local model cache has no '{alias}' version of {name}; run 'dxassist bootstrap' "
                "or start the server once while the registry is reachable."
            )
        return self._load_cached(name, version, quick=True)

    def cached_versions(self, name: str) -> list[str]:
        """Versions of ``name`` present in the cache (with a manifest), lowest first."""
        folder = self.cache_dir / check_name(name)
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if (p / MANIFEST_FILE).is_file() and p.name.isdigit()]
        return sorted(found, key=int)

    # -- internals ----------------------------------------------------------------------------------

    def _fetch_version(
        self, client: RegistryClient, name: str, version: str, aliases: dict[str, str]
    ) -> LocalModel:
        info = client.get_version(name, version)
        if not info.sha256:
            raise IntegrityError(
                f"Version {version} of {name} has no sha256 tag, so its file cannot be verified; "
                "register it again through log_and_register."
            )
        folder = self._version_dir(name, version)
        target = folder / MODEL_FILE
        if target.is_file():
            if sha256_file(target) != info.sha256:
                _log.warning(
                    "Cached file of %s version %s does not match its sha256 tag; downloading it again.",
                    name,
                    version,
                )
                target.unlink()
        if not target.is_file():
            self._download(client, name, version, info.sha256, target)
        version_aliases = sorted(a for a, v in aliases.items() if v == version)
        _write_json(
            folder / MANIFEST_FILE,
            {
                "name": name,
                "version": version,
                "sha256": info.sha256,
                "aliases": version_aliases,
                "run_id": info.run_id,
                "source": "registry",
            },
        )
        self._merge_aliases(name, aliases)
        return LocalModel(
            name=name,
            version=version,
            sha256=info.sha256,
            path=target,
            aliases=tuple(version_aliases),
            run_id=info.run_id,
        )

    def _download(self, client: RegistryClient, name: str, version: str, expected: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent.parent) as tmp:
            downloaded = client.download_onnx(name, version, Path(tmp))
            actual = sha256_file(downloaded)
            if actual != expected:
                raise IntegrityError(
                    f"The file downloaded for {name} version {version} has sha256 {actual[:12]}..., not "
                    f"the {expected[:12]}... recorded at registration; it was discarded."
                )
            # Same file system: the rename is atomic, so a reader never sees half a model.
            os.replace(downloaded, target)
        _log.info("Cached %s version %s at %s.", name, version, target)

    def _offline(self, name: str, alias: str, why: str) -> LocalModel:
        version = self._read_aliases(name).get(alias)
        if version is None:
            raise ModelUnavailable(
                f"{name} ({alias}) is unavailable: {why}, and the local model cache in {self.cache_dir} "
                "holds no copy. Start once with the registry reachable, or run 'dxassist bootstrap'."
            )
        model = self._load_cached(name, version, quick=False)
        _log.warning(
            "Using the cached %s version %s for '%s' because %s.", name, version, alias, why.rstrip(".")
        )
        return LocalModel(
            name=model.name,
            version=model.version,
            sha256=model.sha256,
            path=model.path,
            aliases=model.aliases,
            run_id=model.run_id,
            offline=True,
        )

    def _load_cached(self, name: str, version: str, *, quick: bool) -> LocalModel:
        folder = self._version_dir(name, version)
        manifest = _read_json(folder / MANIFEST_FILE)
        target = folder / MODEL_FILE
        expected = manifest.get("sha256") if isinstance(manifest, dict) else None
        if not isinstance(expected, str) or not target.is_file():
            raise ModelUnavailable(
                f"The local model cache lists {name} version {version} but its file or manifest is "
                f"missing in {folder}; fetch it again while the registry is reachable."
            )
        actual = sha256_cached(target) if quick else sha256_file(target)
        if actual != expected:
            target.unlink(missing_ok=True)
            raise IntegrityError(
                f"The cached file of {name} version {version} has sha256 {actual[:12]}..., not the "
                f"{expected[:12]}... in its manifest; the file was deleted. Fetch it again from the registry."
            )
        aliases = manifest.get("aliases") or []
        run_id = manifest.get("run_id")
        return LocalModel(
            name=name,
            version=version,
            sha256=actual,
            path=target,
            aliases=tuple(str(a) for a in aliases),
            run_id=str(run_id) if run_id else None,
        )

    def _version_dir(self, name: str, version: str) -> Path:
        return self.cache_dir / check_name(name) / check_version(version)

    def _read_aliases(self, name: str) -> dict[str, str]:
        data = _read_json(self.cache_dir / check_name(name) / ALIASES_FILE)
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def _merge_aliases(self, name: str, aliases: dict[str, str]) -> None:
        """Record the registry's alias map for cached versions.

        An alias whose new version is not cached yet keeps its previous, cached version: that is the
        best copy to serve if the registry goes away before it is fetched. Aliases the registry no
        longer has are dropped.
        """
        cached = set(self.cached_versions(name))
        old = self._read_aliases(name)
        known: dict[str, str] = {}
        for alias, version in aliases.items():
            if version in cached:
                known[alias] = version
            elif old.get(alias) in cached:
                known[alias] = old[alias]
        if known != old:
            _write_json(self.cache_dir / name / ALIASES_FILE, known)
            # Keep each manifest's alias list in step with the map (an alias that moved leaves it).
            for version in cached:
                path = self._version_dir(name, version) / MANIFEST_FILE
                manifest = _read_json(path)
                if not isinstance(manifest, dict):
                    continue
                current = sorted(a for a, v in known.items() if v == version)
                if manifest.get("aliases") != current:
                    _write_json(path, {**manifest, "aliases": current})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise RegistryError(
            f"The cache file {path} is unreadable ({e}); delete it to rebuild the cache."
        ) from e


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename) so concurrent readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
