"""The package's shape, computed from its syntax trees: an acyclic import graph, short modules, and planning
(the code the Snakefile runs on every call) free of torch and PyHessian."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "ticketlab"
MAX_LINES = 400
# what the Snakefile imports (directly or through these): no torch, so that parsing the workflow is quick
PLANNING = ("ticketlab.config", "ticketlab.claims", "ticketlab.specs", "ticketlab.plan", "ticketlab.layout",
            "ticketlab.catalog",
            "ticketlab.defaults", "ticketlab.registry", "ticketlab.devices", "ticketlab.entry", "ticketlab.jobs",
            "ticketlab.jobserver")
HEAVY = ("torch", "pyhessian", "torchvision")


def modules() -> dict[str, pathlib.Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = ("ticketlab",) + p.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


MODULES = modules()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imports(name: str, top_level_only: bool = False) -> set[str]:
    """Everything module `name` imports: package modules (and, as Python runs them, the packages above
    them: importing a.b.c runs a/__init__ and a/b/__init__) and outside modules by their top name.
    Function-level imports count unless top_level_only."""
    tree = ast.parse(MODULES[name].read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # imports in if/try blocks at module level run at import time too
        nodes = [n for stmt in tree.body for n in ast.walk(stmt)
                 if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    here = name if is_package(name) else name.rpartition(".")[0]
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = here.split(".")[:len(here.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            if not t.startswith("ticketlab"):
                out.add(t.split(".")[0])
                continue
            while t not in MODULES:
                t = t.rpartition(".")[0]
            parts = t.split(".")
            out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    # a package importing its own submodules (registration) is not an edge; nor is a module importing itself
    return {t for t in out if t != name and not (is_package(name) and t.startswith(name + "."))}


def package_graph(top_level_only: bool = False) -> dict[str, set[str]]:
    return {m: {t for t in imports(m, top_level_only) if t in MODULES} for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_count_function_level_ones_and_the_packages_above():
    assert "ticketlab.training" in imports("ticketlab.analysis.hessian")  # from ..training import ...
    assert "torch" in imports("ticketlab.jobs") and "torch" not in imports("ticketlab.jobs", top_level_only=True)
    assert "ticketlab.pruners.zoo" not in imports("ticketlab.pruners")  # the package's own modules: excepted


def test_the_import_graph_has_no_cycle():
    """Every import counted, function-level ones included: none exists to break a cycle."""
    assert cycles(package_graph()) == []


@pytest.mark.parametrize("name", PLANNING)
def test_planning_imports_no_torch_at_import_time(name):
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        found = imports(m, top_level_only=True)
        assert not found & set(HEAVY), f"{m} imports {sorted(found & set(HEAVY))} at import time (from {name})"
        todo += [t for t in found if t in MODULES]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_longer_than_400_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(PACKAGE.parent)}: {lines} lines"
