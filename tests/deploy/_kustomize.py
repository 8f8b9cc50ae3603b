"""Rendering the Kustomize tree of ``deploy/kubernetes`` in Python, for the offline manifest tests.

Only the part of Kustomize the tree uses is rendered, and :func:`render` refuses any other field, so a
kustomization that grows a feature this module does not know fails the tests instead of being misread:

- ``resources``: files of the same folder, or another kustomization folder (rendered first);
- ``patches`` with ``path`` only: strategic-merge patches found by ``kind`` and ``metadata.name``. Maps
  merge key by key; lists of maps that all carry ``name`` (containers, env, volumes, volumeMounts)
  merge item by item on ``name``; any other list is replaced, as Kustomize does for lists without a
  merge key;
- ``namespace``: set on every resource;
- ``labels`` with ``pairs`` (no selectors, no templates): added to every resource's ``metadata.labels``;
- ``images`` with ``name``, ``newName``, ``newTag``: applied to containers whose image is ``name``.

``kubectl apply -k`` (Kustomize 5) renders the same tree the same way.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FIELDS = frozenset(
    {"apiVersion", "kind", "resources", "patches", "namespace", "labels", "images"}
)


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of ``path``."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    named = (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in [*base, *patch])
    )
    if named:
        merged_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            for index, existing in enumerate(merged_list):
                if existing["name"] == item["name"]:
                    merged_list[index] = _merge(existing, item)
                    break
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    spec = resource.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if "template" in spec else {}
    return [*pod.get("containers", []), *pod.get("initContainers", [])]


def render(folder: Path) -> list[dict[str, Any]]:
    """The resources ``kubectl kustomize folder`` prints, in order.

    Raises:
        ValueError: The kustomization uses a field or form this renderer does not implement, or a patch
            names no resource of the tree.
    """
    kustomization = load_documents(folder / "kustomization.yaml")[0]
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    if unknown:
        raise ValueError(f"{folder}: kustomization fields {sorted(unknown)} are not rendered by this test")
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = (folder / entry).resolve()
        resources.extend(render(target) if target.is_dir() else load_documents(target))
    for patch_entry in kustomization.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise ValueError(f"{folder}: only strategic-merge patches given by 'path' are rendered")
        for patch in load_documents(folder / patch_entry["path"]):
            key = (patch["kind"], patch["metadata"]["name"])
            for index, resource in enumerate(resources):
                if (resource["kind"], resource["metadata"]["name"]) == key:
                    resources[index] = _merge(resource, patch)
                    break
            else:
                raise ValueError(f"{folder}: patch {patch_entry['path']} targets no resource {key}")
    for label in kustomization.get("labels", []):
        if set(label) != {"pairs"}:
            raise ValueError(f"{folder}: only labels with 'pairs' (metadata labels only) are rendered")
        for resource in resources:
            resource["metadata"].setdefault("labels", {}).update(label["pairs"])
    for image in kustomization.get("images", []):
        if not set(image) <= {"name", "newName", "newTag"}:
            raise ValueError(f"{folder}: images take name, newName and newTag only here")
        for resource in resources:
            for container in _containers(resource):
                if container["image"] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    if "namespace" in kustomization:
        for resource in resources:
            resource["metadata"]["namespace"] = kustomization["namespace"]
    return resources
