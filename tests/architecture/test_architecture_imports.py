"""The seams of docs/internals.md hold in the code: a forbidden import or an import cycle fails here.

The rules are read from the doc's tables (``## Packages and who owns what``, ``## Third-party
libraries``), so the doc and the code cannot drift apart: change a seam in the doc first, then the code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _architecture_imports import (
    PACKAGES,
    Import,
    Rules,
    all_imports,
    cycles,
    imports_of,
    module_name,
    read_rules,
    source_files,
    unit_edges,
)


@pytest.fixture(scope="module")
def rules() -> Rules:
    return read_rules()


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


def _first_party(name: str) -> bool:
    return name.split(".", 1)[0] in PACKAGES


def _report(bad: list[str]) -> str:
    return "\n".join(sorted(set(bad)))


def test_the_doc_names_the_seams_it_is_checked_against(rules: Rules) -> None:
    for unit in ("inference.dicom", "inference.dimse", "inference.services", "inference.api"):
        assert unit in rules.may_import
    assert {"fastapi", "mlflow", "torch", "sqlalchemy"} <= set(rules.third_party)


def test_every_module_belongs_to_a_row_of_the_doc(rules: Rules) -> None:
    missing = [module_name(path) for path in source_files() if rules.unit_of(module_name(path)) is None]
    assert missing == [], "modules without a row in docs/internals.md:\n" + _report(missing)


def test_each_package_imports_only_what_its_row_allows(rules: Rules, imports: list[Import]) -> None:
    bad: list[str] = []
    for found in imports:
        if not _first_party(found.target):
            continue
        source, target = rules.unit_of(found.source), rules.unit_of(found.target)
        if source is None or target is None:
            bad.append(f"{found.where()}: {found.target} has no row in docs/internals.md")
        elif not rules.allowed(source, target):
            bad.append(f"{found.where()}: {source} may not import {target} ({found.target})")
    assert bad == [], "imports docs/internals.md does not allow:\n" + _report(bad)


def test_third_party_libraries_stay_where_the_doc_puts_them(rules: Rules, imports: list[Import]) -> None:
    bad: list[str] = []
    for found in imports:
        library = found.target.split(".", 1)[0]
        users = rules.third_party.get(library)
        if users is None:
            continue
        unit = rules.unit_of(found.source)
        if unit not in users:
            bad.append(f"{found.where()}: {unit} imports {library} (only {', '.join(sorted(users))} may)")
    assert bad == [], "third-party imports outside their packages:\n" + _report(bad)


@pytest.mark.parametrize("top", PACKAGES)
def test_no_import_cycle_between_the_subpackages(rules: Rules, imports: list[Import], top: str) -> None:
    edges = unit_edges(rules, imports, top)
    found = cycles({source: set(targets) for source, targets in edges.items()})
    lines: list[str] = []
    for component in found:
        lines.append(" <-> ".join(component))
        for source in component:
            for target in component:
                for example in edges.get(source, {}).get(target, [])[:2]:
                    lines.append(f"    {source} -> {target}: {example.where()}")
    assert found == [], "import cycles:\n" + "\n".join(lines)


def test_the_server_never_imports_training_or_torch(imports: list[Import]) -> None:
    bad = [
        f"{found.where()}: {found.target}"
        for found in imports
        if found.source.split(".", 1)[0] in ("inference", "model_registry")
        and found.target.split(".", 1)[0] in ("training", "torch", "torchvision")
    ]
    bad += [
        f"{found.where()}: {found.target}"
        for found in imports
        if found.source.startswith("model_registry") and found.target.split(".", 1)[0] == "inference"
    ]
    assert bad == [], "the server side imports training code or torch:\n" + _report(bad)


def test_a_forbidden_import_or_a_cycle_is_caught(rules: Rules, tmp_path: Path) -> None:
    # The checks above can fail: services importing FastAPI, dicom importing services (lazily).
    lazy = tmp_path / "_lazy.py"
    lazy.write_text("def f():\n    from inference.services import open_context\n", encoding="utf-8")
    [found] = imports_of(lazy, "inference.dicom._lazy")
    assert (found.source, found.target) == ("inference.dicom._lazy", "inference.services")
    assert not rules.allowed("inference.dicom", "inference.services")
    assert "inference.services" not in rules.third_party["fastapi"]
    back = Import("inference.services._x", "inference.dicom", lazy, 1)
    edges = unit_edges(rules, [found, back], "inference")
    assert cycles({s: set(t) for s, t in edges.items()}) == [["inference.dicom", "inference.services"]]
