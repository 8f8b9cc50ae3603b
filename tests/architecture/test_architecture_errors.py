"""One error root per top-level package; HTTP statuses only in ``inference.api``.

Read with :mod:`ast`: every exception class a package defines must descend from the package's root
(``InferenceError``, ``TrainingError``, ``RegistryError``), through the package's own classes and
built-in exceptions only, so ``except InferenceError`` catches whatever dxassist refuses on purpose.
"""

from __future__ import annotations

import ast
import builtins

import pytest
from _architecture_imports import module_name, source_files

ROOTS = {"inference": "InferenceError", "training": "TrainingError", "model_registry": "RegistryError"}
BUILTIN_ERRORS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}
# Classes that derive from an exception without being one of ours to raise, and why.
EXEMPT = {
    "Withheld": "inference.observability: stands in for a third-party exception in a log; never raised",
}
HTTP_ATTRIBUTES = {"status_code", "http_status"}


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _sources(top: str) -> dict[str, str]:
    """Module → source text, for the modules of package ``top``."""
    return {
        module_name(path): path.read_text(encoding="utf-8")
        for path in source_files()
        if module_name(path).split(".", 1)[0] == top
    }


def _classes(sources: dict[str, str]) -> dict[str, tuple[str, list[str], ast.ClassDef]]:
    """Class name → (module, base names, node) for the classes the modules define."""
    found: dict[str, tuple[str, list[str], ast.ClassDef]] = {}
    for module, text in sources.items():
        tree = ast.parse(text, filename=module)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                found[node.name] = (module, [_base_name(base) for base in node.bases], node)
    return found


def _errors(sources: dict[str, str]) -> dict[str, tuple[str, set[str]]]:
    """Exception class name → (module, the names of its ancestors) among the modules' classes."""
    classes = _classes(sources)
    ancestry: dict[str, set[str]] = {}

    def ancestors(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if name in ancestry:
            return ancestry[name]
        out: set[str] = set()
        for base in classes[name][1] if name in classes else ():
            out.add(base)
            if base in classes and base not in seen:
                out |= ancestors(base, seen | {name})
        ancestry[name] = out
        return out

    return {
        name: (module, ancestors(name))
        for name, (module, _, _) in classes.items()
        if ancestors(name) & BUILTIN_ERRORS
    }


def _strays(errors: dict[str, tuple[str, set[str]]], root: str) -> list[str]:
    return sorted(
        f"{module}.{name}"
        for name, (module, ancestry) in errors.items()
        if name != root
        and root not in ancestry
        and name not in EXEMPT
        # the API's own errors are HTTP exceptions (Starlette's), mapped where they are defined
        and not module.startswith("inference.api")
    )


@pytest.mark.parametrize("top", sorted(ROOTS))
def test_every_error_of_a_package_descends_from_its_root(top: str) -> None:
    root = ROOTS[top]
    errors = _errors(_sources(top))
    assert root in errors, f"{top} defines no {root}"
    strays = _strays(errors, root)
    assert strays == [], f"exception classes of {top} outside {root}:\n" + "\n".join(strays)


def test_only_the_api_gives_errors_an_http_status() -> None:
    bad: list[str] = []
    for top in ROOTS:
        sources = _sources(top)
        classes = _classes(sources)
        for name, (module, _ancestry) in _errors(sources).items():
            if module.startswith("inference.api"):
                continue
            for node in ast.walk(classes[name][2]):
                targets: list[ast.expr] = []
                if isinstance(node, ast.Assign):
                    targets = list(node.targets)
                elif isinstance(node, ast.AnnAssign):
                    targets = [node.target]
                for target in targets:
                    attribute = (
                        target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                    )
                    value = getattr(node, "value", None)
                    http_literal = (
                        isinstance(value, ast.Constant)
                        and isinstance(value.value, int)
                        and (400 <= value.value <= 599)
                    )
                    if attribute in HTTP_ATTRIBUTES or (attribute == "status" and http_literal):
                        bad.append(f"{module}.{name}.{attribute}")
    assert bad == [], "errors carrying an HTTP status outside inference.api:\n" + "\n".join(sorted(bad))


def test_the_check_sees_a_stray_error() -> None:
    # A new error rooted in ValueError alone, beside one rooted through a subpackage root.
    sources = {
        "inference.errors": "class InferenceError(Exception): ...\n",
        "inference.x._errors": "class XError(InferenceError, ValueError): ...\nclass XBad(XError): ...\n",
        "inference.y": "class Stray(ValueError): ...\nclass NotAnError: ...\n",
    }
    assert _strays(_errors(sources), "InferenceError") == ["inference.y.Stray"]
