"""The shape of the package: imports go one way (no cycle among evomerge's modules, imports
inside functions included), and evaluation does not reach into the runtime above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "evomerge"


def import_graph() -> dict[str, set[str]]:
    """module -> the evomerge modules it imports anywhere in its file."""
    modules = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for m, f in modules.items():
        for node in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != m and not m.startswith(name + "."):  # a package's own parent is no edge
                    graph[m].add(name)
    return graph


def test_no_import_cycle_among_modules():
    graph = import_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(path[path.index(t):] + [t] if t in path else [m, t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_evaluation_imports_nothing_from_the_runtime():
    graph = import_graph()
    bad = {m: sorted(t for t in ts if t.startswith("evomerge.runtime")) for m, ts in graph.items()
           if m.startswith("evomerge.evaluate")}
    assert not any(bad.values()), {m: t for m, t in bad.items() if t}


def test_the_recipe_model_is_a_leaf():
    """Recipes know the method registry and how config files are read, nothing above them."""
    graph = import_graph()
    assert graph["evomerge.recipe"] <= {"evomerge.errors", "evomerge.ops", "evomerge.ops.layered",
                                        "evomerge.config_io"}, graph["evomerge.recipe"]
    assert graph["evomerge.config_io"] <= {"evomerge.errors"}, graph["evomerge.config_io"]
    assert graph["evomerge.ops.layered"] <= {"evomerge.layers"}, graph["evomerge.ops.layered"]
    assert graph["evomerge.layers"] == set(), graph["evomerge.layers"]


def test_status_and_export_name_the_same_best_trial_under_ties(tmp_path):
    """One rule for "the best trial" (the earliest of equal values), whatever the direction."""
    from evomerge.export import pick_trial
    from evomerge.report.status import run_status
    from evomerge.runtime.store import RunStore
    from helpers_runs import write_run

    recipe = {"kind": "parameter", "method": "linear", "sources": [{"model": "zoo:a"}]}
    for direction, values in (("minimize", [0.7, 0.2, 0.5, 0.2]), ("maximize", [0.1, 0.9, 0.9, 0.3])):
        run = write_run(tmp_path / direction, "r", {"loss": direction}, [{"recipe": recipe, "values": [v]} for v in values])
        store = RunStore.open(run)
        info, trials = store.info(), store.trials()
        assert run_status(info, trials).best[0].trial == pick_trial(info, trials, "best")[0].number == 1
