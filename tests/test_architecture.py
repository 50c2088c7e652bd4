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
    ("hemato.config", "hemato.files", "hemato.db", "hemato.jobs", "hemato.data"),
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


# Background work starts only in the job layer. Elsewhere a ThreadPoolExecutor is allowed as a context manager:
# a bounded decode pool made, used and joined inside one call (datasets, explore, evaluate, features do this).
JOB_LAYER = PACKAGE / "jobs.py"
FORBIDDEN_MODULES = {"subprocess", "multiprocessing"}
FORBIDDEN_CALLS = {"Thread", "Timer", "fork", "forkpty", "system", "popen", "ProcessPoolExecutor", "Popen"}
FORBIDDEN_CALLS |= {
    f"{prefix}{suffix}" for prefix in ("spawn", "exec") for suffix in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def background_starts(source: str) -> list[str]:
    """Places in ``source`` that start a thread or a process (imports of subprocess/multiprocessing included)."""
    tree = ast.parse(source)
    pooled = {id(item.context_expr) for node in ast.walk(tree) if isinstance(node, ast.With) for item in node.items}
    imported = {
        alias.asname or alias.name: node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    found = []
    for node in sorted(ast.walk(tree), key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0))):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(f"from {node.module} import …")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rpartition(".")[2]
            origin = name.split(".")[0] if "." in name else imported.get(name, "")
            if last in FORBIDDEN_CALLS and origin.split(".")[0] in {"threading", "os", "concurrent"}:
                found.append(f"{name}() at line {node.lineno}")
            elif last == "ThreadPoolExecutor" and id(node) not in pooled:
                found.append(f"{name}() outside a with block at line {node.lineno}")
    return found


def test_the_scanner_finds_threads_and_processes() -> None:
    sample = (
        "import subprocess\nimport threading, os\nfrom concurrent.futures import ThreadPoolExecutor\n"
        "threading.Thread(target=print).start()\nos.fork()\npool = ThreadPoolExecutor(2)\n"
        "with ThreadPoolExecutor(2) as ok:\n    ok.map(print, [])\nthreading.Lock()\n"
    )
    assert background_starts(sample) == [
        "import subprocess",
        "threading.Thread() at line 4",
        "os.fork() at line 5",
        "ThreadPoolExecutor() outside a with block at line 6",
    ]


def test_threads_and_processes_start_only_in_the_job_layer() -> None:
    offenders = {
        _module_name(path): found
        for path in PACKAGE.rglob("*.py")
        if path != JOB_LAYER and (found := background_starts(path.read_text()))
    }
    assert not offenders, f"start background work through hemato.jobs instead: {offenders}"
