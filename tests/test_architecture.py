"""The package's shape: imports flow one way, and background work starts only in the job layer."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hemato"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> nx.DiGraph:
    """Every ``hemato`` module and the ``hemato`` modules it imports, function-local imports included."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from hemato.data import imaging`` imports the sub-module, not just the package.
                targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(f"{target}."):
                    graph.add_edge(name, target)
    return graph


def test_import_graph_has_no_cycle() -> None:
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, "import cycles: " + "; ".join(" → ".join([*c, c[0]]) for c in cycles[:10])


# Lower layers never import higher ones; within a layer, sub-packages may use each other (no cycles, above).
LAYERS = (
    ("hemato.config", "hemato.db", "hemato.jobs", "hemato.data"),
    ("hemato.vision",),
    ("hemato.training", "hemato.teaching", "hemato.smear", "hemato.status"),
    ("hemato.bench", "hemato.commands", "hemato.cli", "hemato.__main__", "hemato.ui"),
)


def _layer(module: str) -> int:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(f"{p}.") for p in prefixes):
            return level
    raise AssertionError(f"{module} belongs to no layer; add it to LAYERS")


def test_imports_flow_one_way() -> None:
    graph = import_graph()
    upward = [(a, b) for a, b in graph.edges if a != "hemato" and b != "hemato" and _layer(b) > _layer(a)]
    assert not upward, "imports against the layer order: " + ", ".join(f"{a} → {b}" for a, b in upward)


def test_streamlit_only_in_ui() -> None:
    users = [
        name
        for name, path in ((_module_name(p), p) for p in PACKAGE.rglob("*.py"))
        if not name.startswith("hemato.ui") and "streamlit" in {n.split(".")[0] for n in _imported(path)}
    ]
    assert not users, f"streamlit imported outside hemato.ui: {users}"


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names
