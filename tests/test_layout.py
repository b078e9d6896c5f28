"""The package's import graph: no cycles, the compress/decompress path imports no training code,
and shared modules reach a system only through the registry (:mod:`imgcomp.systems.base`).

The graph is read from the source with ``ast`` (every ``import`` and ``from ... import``, at module
level and inside functions, except under ``if TYPE_CHECKING``), so it covers imports that run only
when a function is called.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "imgcomp"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, module: str, known: set[str]) -> tuple[set[str], set[str]]:
    """(module-level imports, imports anywhere) of one file, as imgcomp module names."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top: set[str] = set()
    anywhere: set[str] = set()

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, at_top: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package
                for _ in range(node.level - 1):
                    parent = parent.rpartition(".")[0]
                base = f"{parent}.{base}" if base else parent
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            if name.startswith("imgcomp"):
                target = resolve(name)
                if target and target != module:
                    anywhere.add(target)
                    if at_top:
                        top.add(target)
        nested = at_top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, nested)

    visit(tree, True)
    return top, anywhere


def _graphs() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = _modules()
    known = set(modules)
    top, anywhere = {}, {}
    for name, path in modules.items():
        top[name], anywhere[name] = _imports(path, name, known)
        for graph in (top, anywhere):  # importing a.b.c runs a and a.b first
            parts = name.split(".")
            graph[name] |= {".".join(parts[:i]) for i in range(1, len(parts))} - {name}
    return top, anywhere


def _closure(graph: dict[str, set[str]], roots: list[str]) -> set[str]:
    seen, stack = set(), list(roots)
    while stack:
        module = stack.pop()
        if module not in seen:
            seen.add(module)
            stack.extend(graph.get(module, ()))
    return seen


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def _without_package_parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges from a package to its own submodules are how packages re-export; a submodule's
    implicit edge to its parent package then closes a loop that Python resolves (the parent is
    already in sys.modules). Cycles are looked for between modules, not along that spine."""
    return {
        name: {t for t in targets if not name.startswith(t + ".") and not t.startswith(name + ".")}
        for name, targets in graph.items()
    }


def test_no_import_cycles() -> None:
    top, anywhere = _graphs()
    assert _find_cycle(_without_package_parents(top)) is None
    # also none through imports inside functions (lazy imports must not hide a loop)
    assert _find_cycle(_without_package_parents(anywhere)) is None


RUNTIME_ROOTS = [
    "imgcomp", "imgcomp.api", "imgcomp.pillow_plugin", "imgcomp.container", "imgcomp.zoo",
    "imgcomp.systems.mentzer2018.stream", "imgcomp.codecs",
]


def test_compress_and_decompress_import_no_training_code() -> None:
    _, anywhere = _graphs()
    # the system package's hooks for training, recipes, benchmarks and visualisation are not the
    # runtime: follow the package's module-level imports and its encode/decode modules only
    graph = dict(anywhere)
    graph["imgcomp.systems.mentzer2018"] = _graphs()[0]["imgcomp.systems.mentzer2018"] | {
        "imgcomp.systems.mentzer2018.stream", "imgcomp.systems.mentzer2018.model"
    }
    reached = _closure(graph, RUNTIME_ROOTS + ["imgcomp.systems.mentzer2018"])
    assert not {m for m in reached if m.startswith("imgcomp.training")}
    assert not {m for m in reached if m in ("imgcomp.eval", "imgcomp.cli", "imgcomp.data")}
    assert not {m for m in reached if m.endswith((".objective_training", ".recipes", ".training"))}


def test_a_real_round_trip_loads_no_training_module() -> None:
    script = (
        "import sys, numpy as np, imgcomp;"
        "data = imgcomp.compress(np.full((24, 40, 3), 90, np.uint8), quality=1);"
        "imgcomp.decompress(data);"
        "bad = sorted(m for m in sys.modules if m.startswith(('imgcomp.training', 'imgcomp.eval', 'imgcomp.cli')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_shared_modules_reach_systems_only_through_the_registry() -> None:
    _, anywhere = _graphs()
    for module, targets in anywhere.items():
        if module.startswith("imgcomp.systems"):
            continue
        direct = {t for t in targets if t.startswith("imgcomp.systems.") and t != "imgcomp.systems.base"}
        assert not direct, f"{module} imports {sorted(direct)}: ask imgcomp.systems for the system instead"


def test_systems_do_not_import_each_other_or_the_front_ends() -> None:
    _, anywhere = _graphs()
    for module, targets in anywhere.items():
        if not module.startswith("imgcomp.systems."):
            continue
        for target in targets:
            assert not target.startswith(("imgcomp.cli", "imgcomp.eval", "imgcomp.api", "imgcomp.codecs")), (module, target)
            if target.startswith("imgcomp.systems.") and module.count(".") >= 2 and target.count(".") >= 2:
                own = module.split(".")[2]
                assert target.split(".")[2] in (own, "base"), (module, target)
