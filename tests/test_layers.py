"""Imports run one way: the layers of docs/architecture.md, read from the source with ``ast``.

    pice  <-  edge_agent, pice_gateway  <-  pice_stack  <-  pice_bench, pice_tune  <-  pice_cli

Every ``import`` and ``from … import`` counts, wherever it is written: at module level, inside a
function (the lazy imports that keep ``pice --help`` fast), under ``if TYPE_CHECKING``; so do
``importlib.import_module("…")`` and ``__import__("…")`` with a literal name. Starting another
process by its command line (``pice.command.pice_argv``) is not an import and is not counted.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Mapping, Set
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Where each top-level package's source lives.
SOURCE_DIRS = {
    "pice": ROOT / "src" / "pice",
    "edge_agent": ROOT / "edge_agent",
    "pice_gateway": ROOT / "src" / "pice_gateway",
    "pice_stack": ROOT / "src" / "pice_stack",
    "pice_bench": ROOT / "src" / "pice_bench",
    "pice_tune": ROOT / "src" / "pice_tune",
    "pice_cli": ROOT / "src" / "pice_cli",
}
# The other top-level packages each one may import. The edge agent and the gateway are
# siblings: they share the base and the edge's wire protocol, and never import each other.
ALLOWED: Mapping[str, Set[str]] = {
    "pice": set(),
    "edge_agent": {"pice"},
    "pice_gateway": {"pice"},
    "pice_stack": {"pice", "edge_agent", "pice_gateway"},
    "pice_bench": {"pice", "edge_agent", "pice_gateway", "pice_stack"},
    # The tuning pipeline sits beside the bench: both drive the stack, neither imports the other.
    "pice_tune": {"pice", "edge_agent", "pice_gateway", "pice_stack"},
    "pice_cli": {"pice", "edge_agent", "pice_gateway", "pice_stack", "pice_bench", "pice_tune"},
}
# Packages whose modules must not import each other in a circle either: all of them (the
# bench's parser and its run used to import each other).
ACYCLIC_MODULES = tuple(SOURCE_DIRS)


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    imported: str  # the most specific first-party module it names
    where: str  # path:line, for the failure message

    @property
    def edge(self) -> tuple[str, str]:
        return top(self.importer), top(self.imported)


def top(module: str) -> str:
    return module.split(".")[0]


def module_name(package: str, path: Path) -> str:
    parts = path.relative_to(SOURCE_DIRS[package]).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package, *parts))


@cache
def modules() -> dict[str, Path]:
    """Every first-party module, by dotted name."""
    return {
        module_name(package, path): path
        for package, source in SOURCE_DIRS.items()
        for path in sorted(source.rglob("*.py"))
    }


def resolve(name: str) -> str | None:
    """The longest known module that ``name`` (``a.b.c``, maybe ``module.attribute``) is in."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules():
            return ".".join(parts)
        parts.pop()
    return None


def imports_in(source: str, module: str, *, is_package: bool = False) -> list[tuple[str, int]]:
    """The first-party modules ``source`` (the text of ``module``) imports, with line numbers.

    ``from a import b`` names the module ``a.b`` when there is one, else ``a`` (b is a name in it).
    """
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package upwards
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join([*package[: len(package) - node.level + 1], *filter(None, [base])])
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base
                for alias in node.names
            ]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            )
        ):
            names = [node.args[0].value]
        targets = {t for t in map(resolve, names) if t is not None and t != module}
        found.extend((target, getattr(node, "lineno", 0)) for target in targets)
    return sorted(found)


@cache
def imports() -> tuple[Import, ...]:
    """Every import of a first-party module by a first-party module, lazy ones included."""
    return tuple(
        Import(module, target, f"{path.relative_to(ROOT)}:{line}")
        for module, path in modules().items()
        for target, line in imports_in(
            path.read_text(), module, is_package=path.name == "__init__.py"
        )
    )


def find_cycle(graph: Mapping[str, Set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, …, a]``, or None when it has none."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_every_package_has_a_layer() -> None:
    """A new package must be placed in the layers (and type-checked) before it can be used."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(pyproject["tool"]["mypy"]["packages"]) == set(ALLOWED) == set(SOURCE_DIRS)
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert {ROOT / path for path in wheel} == set(SOURCE_DIRS.values())
    assert not find_cycle(ALLOWED), "the layers themselves must not form a cycle"


def test_the_scan_sees_every_kind_of_import() -> None:
    """Guards the guard: an empty or blind scan would pass every other test here."""
    assert len(modules()) > 80
    source = """
import pice.errors, json
from pice.models import catalog, registry
from . import records
from .questions import Question
from pice.http.sse import *

def lazy():
    from pice_gateway.settings import GatewaySettings
    importlib.import_module("edge_agent.prompts")
    __import__("pice_stack.supervisor")
"""
    assert [target for target, _ in imports_in(source, "pice_bench.main")] == [
        "edge_agent.prompts",
        "pice.errors",
        "pice.http.sse",
        "pice.models.catalog",
        "pice.models.registry",
        "pice_bench.questions",
        "pice_bench.records",
        "pice_gateway.settings",
        "pice_stack.supervisor",
    ]
    # And on the real tree: the bench's parser imports its run inside a function.
    assert ("pice_bench.cli", "pice_bench.main") in {(i.importer, i.imported) for i in imports()}


def test_imports_run_down_the_layers() -> None:
    wrong = [
        f"{i.where}: {i.importer} imports {i.imported}"
        for i in imports()
        if i.edge[0] != i.edge[1] and i.edge[1] not in ALLOWED[i.edge[0]]
    ]
    assert not wrong, "imports against the layers (see docs/architecture.md):\n" + "\n".join(wrong)


def test_no_cycle_between_top_level_packages() -> None:
    graph: dict[str, set[str]] = {}
    for i in imports():
        if i.edge[0] != i.edge[1]:
            graph.setdefault(i.edge[0], set()).add(i.edge[1])
    cycle = find_cycle(graph)
    assert cycle is None, "packages import each other: " + " -> ".join(cycle or [])


def test_no_cycle_between_modules_inside_a_package() -> None:
    for package in ACYCLIC_MODULES:
        graph: dict[str, set[str]] = {}
        for i in imports():
            if i.edge == (package, package):
                graph.setdefault(i.importer, set()).add(i.imported)
        cycle = find_cycle(graph)
        assert cycle is None, f"modules of {package} import each other: " + " -> ".join(cycle or [])
