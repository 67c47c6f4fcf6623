"""The package's structure: no import cycle between its modules or its subpackages (imports inside
functions count too), and each layer imports only the layers below it."""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

import launchsim

# Each top-level part may import only parts of a lower rank (or its own).
RANKS = {
    "launchsim.errors": 0, "launchsim.files": 0, "launchsim.scenarios": 1, "launchsim.models": 2, "launchsim.envs": 3,
    "launchsim.agents": 4, "launchsim.cli": 5, "launchsim.__main__": 6, "launchsim": 6,
}  # fmt: skip


def _modules() -> dict[str, Path]:
    """Every module of the package (the subpackages are walked from their own folders: in a source
    checkout they live beside launchsim/, mapped into it)."""
    found = {"launchsim": Path(launchsim.__file__)}
    roots = ["launchsim", *(name for name in RANKS if name.count(".") == 1)]
    for root in roots:
        spec = importlib.util.find_spec(root)
        found[root] = Path(spec.origin)
        for info in pkgutil.walk_packages(spec.submodule_search_locations or [], root + "."):
            sub = importlib.util.find_spec(info.name)
            if sub is not None and sub.origin and sub.origin.endswith(".py"):
                found[info.name] = Path(sub.origin)
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (a ``from package import module`` names the module)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("launchsim"):
                out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _part(name: str, depth: int) -> str:
    return ".".join(name.split(".")[:depth])


def test_every_part_of_the_package_was_read():
    assert {"launchsim.envs.dynamics", "launchsim.models.ops", "launchsim.agents.policies.source", "launchsim.cli"} <= set(MODULES)


def test_no_import_cycle_between_modules():
    assert _cycle(GRAPH) is None


def test_no_import_cycle_between_subpackages():
    # launchsim.agents.policies, launchsim.agents.evaluation, ... (a module outside a subpackage stands alone)
    packages: dict[str, set[str]] = {}
    for name, targets in GRAPH.items():
        source = name if name not in MODULES or MODULES[name].name != "__init__.py" else name
        key = _part(source, 3) if source.count(".") >= 3 else source
        packages.setdefault(key, set()).update(
            (_part(t, 3) if t.count(".") >= 3 else t) for t in targets if (_part(t, 3) if t.count(".") >= 3 else t) != key
        )
    assert _cycle(packages) is None


def test_each_layer_imports_only_the_layers_below():
    def rank(name: str) -> int:
        return next(RANKS[p] for p in sorted(RANKS, key=len, reverse=True) if name == p or name.startswith(p + "."))

    upward = [(a, b) for a, targets in GRAPH.items() for b in targets if rank(b) > rank(a)]
    assert upward == []
