"""The import graph of the project's packages, read with :mod:`ast`, and the rules of docs/internals.md.

Every ``import`` and ``from ... import`` counts, wherever it is written: at module level, inside a
function (a lazy import still closes a cycle at run time) or under ``TYPE_CHECKING`` (still a coupling).
Imports by string (``importlib.import_module("training.cli")``) are not seen; the CLI loads training that
way on purpose.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INTERNALS = ROOT / "docs" / "internals.md"
PACKAGES = ("inference", "model_registry", "training")
# What every unit of a top-level package may import without its row saying so: the package's root
# (``inference/__init__.py`` only switches telemetry off) and its error root.
FLOOR = {
    "inference": frozenset({"inference", "inference.errors"}),
    "training": frozenset({"training", "training.errors"}),
    "model_registry": frozenset({"model_registry"}),
}
_TICKED = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Import:
    """One import statement's target, where it is written."""

    source: str  # importing module, dotted
    target: str  # imported module (or module.name for ``from pkg import name``), dotted
    path: Path
    line: int

    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


@dataclass
class Rules:
    """The seams of docs/internals.md: units (rows of the packages table) and third-party limits."""

    may_import: dict[str, frozenset[str]] = field(default_factory=dict)
    third_party: dict[str, frozenset[str]] = field(default_factory=dict)
    row: dict[str, str] = field(default_factory=dict)  # every name in a row's first cell → its first name

    def unit_of(self, module: str) -> str | None:
        """The row a module belongs to (named by the row's first name): the row holding the longest name
        that is the module or a package above it.

        A name ``inference._*`` covers the private top-level modules of ``inference``. The roots
        ``inference`` and ``training`` (their ``__init__``) are the floor, a unit of their own.
        """
        if module in FLOOR and module not in self.row:
            return module
        best: str | None = None
        for name in self.row:
            if name.endswith("._*"):
                parent = name[:-3]
                head, _, rest = module.partition(parent + ".")
                if not head and rest.startswith("_") and (best is None or len(parent) + 1 > len(best)):
                    best = name
            elif module == name or module.startswith(name + "."):
                if best is None or len(name) > len(best):
                    best = name
        return None if best is None else self.row[best]

    def allowed(self, source_unit: str, target_unit: str) -> bool:
        """Whether ``source_unit`` may import ``target_unit`` (a first-party row)."""
        if source_unit == target_unit:
            return True
        top = source_unit.split(".", 1)[0]
        if target_unit in FLOOR.get(top, frozenset()):
            return True
        for allowed in self.may_import.get(source_unit, frozenset()):
            if self.row.get(allowed, allowed) == target_unit:
                return True
            if allowed.endswith(".*") and target_unit.startswith(allowed[:-1]):
                return True
        return False


def _table(lines: list[str], heading: str) -> list[list[str]]:
    """The rows of the first Markdown table after ``heading``, header and rule excluded."""
    start = lines.index(heading)
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]


def read_rules(path: Path = INTERNALS) -> Rules:
    """Parse the two tables of docs/internals.md that fix the seams.

    ``## Packages and who owns what``: the first cell names a unit in backticks (several names: one
    unit, e.g. a module and its helper modules), the last cell lists
    (in backticks) the first-party units it may import; ``—`` for none, ``inference.*`` for any unit
    of ``inference``. Third-party names in that cell are documentation only.
    ``## Third-party libraries``: the first cell names libraries, the second the only units that may
    import them.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    rules = Rules()
    for cells in _table(lines, "## Packages and who owns what"):
        names = _TICKED.findall(cells[0])
        if not names:
            continue
        targets = frozenset(name for name in _TICKED.findall(cells[-1]) if name.split(".", 1)[0] in PACKAGES)
        rules.may_import[names[0]] = targets
        for name in names:
            rules.row[name] = names[0]
    for cells in _table(lines, "## Third-party libraries"):
        users = frozenset(_TICKED.findall(cells[1]))
        for library in _TICKED.findall(cells[0]):
            rules.third_party[library] = users
    return rules


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def imports_of(path: Path, module: str | None = None) -> Iterator[Import]:
    """Every import written in ``path`` (the module ``module``, by default its name here), relative
    imports resolved."""
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if node.module is None:
                # ``from . import x``: x may be a module of its own.
                for alias in node.names:
                    yield Import(module, f"{target}.{alias.name}", path, node.lineno)
            else:
                yield Import(module, target, path, node.lineno)


def all_imports() -> list[Import]:
    return [found for path in source_files() for found in imports_of(path)]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def unit_edges(rules: Rules, imports: Iterable[Import], top: str) -> dict[str, dict[str, list[Import]]]:
    """unit → imported unit → the imports making that edge, for the units of package ``top``."""
    edges: dict[str, dict[str, list[Import]]] = {}
    for found in imports:
        source = rules.unit_of(found.source)
        target = rules.unit_of(found.target)
        if source is None or target is None or source == target:
            continue
        if not source.startswith(top) or not target.startswith(top + "."):
            continue
        edges.setdefault(source, {}).setdefault(target, []).append(found)
    return edges
