"""The Pareto front as a rich table: one row per non-dominated trial with a recipe summary."""

from __future__ import annotations

from rich.table import Table

from evomerge.report.points import FrontData
from evomerge.report.summary import recipe_summary


def front_table(data: FrontData, title: str = "Pareto front") -> Table:
    """Rows sorted by the first objective, best first; arrows show each objective's direction."""
    table = Table(title=f"{title} — {len(data.front)} of {len(data.trials)} trials", title_justify="left")
    table.add_column("trial", justify="right", style="bold")
    for obj in data.objectives:
        arrow = "↑" if obj.direction == "maximize" else "↓"
        table.add_column(f"{obj.name} {arrow}", justify="right")
    table.add_column("recipe", overflow="fold")
    first = data.objectives[0].direction == "maximize" if data.objectives else True
    rows = sorted(data.front, key=lambda i: data.values[i, 0], reverse=first)
    for i in rows:
        trial = data.trials[i]
        cells = [f"{v:.4g}" for v in data.values[i]]
        table.add_row(str(trial.number), *cells, recipe_summary(trial.recipe))
    if data.front:
        ref = ", ".join(f"{r:.4g}" for r in data.reference)
        table.caption = f"hypervolume {data.hypervolume:.6g} (reference point {ref})\nfront progress: {progress_line(data)}"
    return table


def progress_line(data: FrontData) -> str:
    """How the front grew: hypervolume after each quarter of the completed evaluations."""
    n = len(data.progress)
    marks = sorted({max(1, round(n * q)) for q in (0.25, 0.5, 0.75, 1.0)})
    return "after " + ", ".join(f"{m} evals: {data.progress[m - 1]:.4g}" for m in marks)
