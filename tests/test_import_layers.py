"""The import floors of documentation/architecture.md: a package imports only packages on lower floors, and
no module imports itself through a circle. Every import counts, including those inside functions."""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import synthunet

PACKAGE = Path(synthunet.__file__).parent
ARCHITECTURE_MD = PACKAGE.parent / "documentation" / "architecture.md"

#: lowest first; a package may import packages on lower floors only (not its neighbours on the same floor).
#: ``synthunet`` is synthunet/__init__.py (the version); top-level modules count as packages of their own.
FLOORS: list[tuple[str, ...]] = [
    ("synthunet", "errors", "env"),
    ("paths", "utilities", "plans"),
    ("cli_support",),
    ("dataset",),
    ("preprocessing",),
    ("fingerprint", "architectures"),
    ("planning",),
    ("prediction",),
    ("evaluation",),
    ("training", "inference"),
    ("model_sharing",),
    ("quickstart",),
]
FLOOR = {package: level for level, packages in enumerate(FLOORS) for package in packages}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the synthunet package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The synthunet modules ``name`` imports anywhere in its file (``from a import b`` counts as a.b when b is
    a module, else as a)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([source] if source else []))
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_package_has_a_floor():
    packages = {package_of(module) for module in module_files()}
    assert sorted(packages - set(FLOOR)) == [], "place new packages on a floor (FLOORS and architecture.md)"
    assert sorted(set(FLOOR) - packages) == [], "packages that no longer exist"
    assert sum(len(packages) for packages in FLOORS) == len(FLOOR), "a package on two floors"


def test_no_package_imports_its_floor_or_above():
    wrong = sorted(f"{module} imports {target} ({package_of(target)} is not below {package_of(module)})"
                   for module, targets in import_graph().items() for target in targets
                   if package_of(target) != package_of(module)
                   and FLOOR.get(package_of(target), -1) >= FLOOR.get(package_of(module), -1))
    assert not wrong, "imports that run up or sideways:\n" + "\n".join(wrong)


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circles():
    graph = import_graph()
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        packages[package_of(module)] |= {package_of(t) for t in targets} - {package_of(module)}
    for circles in (_circles(dict(packages)), _circles(graph)):
        assert not circles, "import circles:\n" + "\n".join(" <-> ".join(circle) for circle in circles)


def test_circles_are_found():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_architecture_md_shows_the_floors():
    rows = [line for line in ARCHITECTURE_MD.read_text().splitlines() if re.match(r"\| \d+ \|", line)]
    shown = [tuple(re.findall(r"`([a-z_]+)`", row.split("|")[2])) for row in rows]
    assert shown == list(reversed(FLOORS)) or shown == FLOORS
