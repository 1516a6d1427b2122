"""`evomerge run EXPERIMENT.yaml [--resume RUN]`: search merge recipes, storing every result."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from evomerge.commands import user_errors

INTERRUPTED = 130


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("run")(run)


def run(
    experiment: Optional[Path] = typer.Argument(None, help="experiment YAML (optional with --resume)"),
    resume: Optional[str] = typer.Option(None, "--resume", help="run directory, run name (under --runs-dir) or store URL"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="evaluation workers (default: the experiment's)"),
    address: Optional[str] = typer.Option(None, "--address", help="join this Ray cluster (host:port) instead of starting Ray locally"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="where new runs are created"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show the live progress bar"),
) -> None:
    """Search merge recipes; every evaluation is stored the moment it is scored."""
    with user_errors():
        from evomerge.errors import ConfigError

        if experiment is None and resume is None:
            raise ConfigError("give an EXPERIMENT.yaml, or --resume RUN to continue a run")
        from evomerge.runtime.driver import open_run

        try:
            store, session, pool = open_run(experiment, resume, workers, runs_dir, address)
        except KeyboardInterrupt:
            typer.echo("\ninterrupted while starting: no evaluation had begun; nothing half made is left "
                       "(run the same command again)", err=True)
            raise typer.Exit(INTERRUPTED) from None
        _search(store, session, pool, progress)


def _search(store, session, pool, progress: bool) -> None:
    from evomerge.runtime.loop import run_loop

    from evomerge.experiment import Budget

    budget = Budget(evaluations=store.meta.get("budget"), items=store.meta.get("budget_items"))
    startup = (store.meta.get("startup_s") or [None])[-1]
    if startup is not None:
        typer.echo(f"{store.name}: started in {startup:.1f} s (checks, workers, sources loaded); "
                   f"{_where(store)}", err=True)
    try:
        summary = run_loop(store, session, pool, budget, show_progress=progress)
    except KeyboardInterrupt:
        done = sum(r.state != "running" for r in store.trials())
        typer.echo(f"\ninterrupted: {done} evaluations are stored; continue with "
                   f"`evomerge run --resume {_where(store)}`", err=True)
        raise typer.Exit(INTERRUPTED) from None
    finally:
        pool.close()
    evals = f"{summary.total}/{budget.evaluations}" if budget.evaluations else f"{summary.total}"
    items = f", {summary.items}/{budget.items} items scored" if budget.items else ""
    typer.echo(f"{store.name}: {evals} evaluations ({summary.failed} failed){items}; stopped: {summary.stopped}")
    workers = pool.summary()                 # the Ray pool: utilization, replaced workers
    if workers:
        typer.echo(workers)
    from evomerge.runtime.references import climb_line, comparison_lines

    climb = climb_line(store)
    for line in ([climb] if climb else []) + comparison_lines(store):
        typer.echo(line)
    best = _best_line(store)   # last: what to do next
    if best:
        typer.echo(best)


def _where(store) -> str:
    return store.meta.get("run_dir") or store.url


def _best_line(store) -> str | None:
    """The best candidate (one objective), or the Pareto front's size and how to pick from it."""
    info, trials = store.info(), [t for t in store.trials() if t.state == "complete"]
    if not trials:
        return None
    where = _where(store)
    if len(info.objectives) > 1:
        from evomerge.report.points import Objective, front_data

        data = front_data(trials, [Objective(n, d) for n, d in info.objectives.items()])
        if not data.trials:
            return None
        front = [data.trials[i].number for i in data.front]
        best = "; ".join(_best_of(trials, n, d) for n, d in info.objectives.items())
        return (f"Pareto front: {len(front)} candidates ({', '.join(map(str, sorted(front)[:10]))}"
                f"{', ...' if len(front) > 10 else ''}) trading off {', '.join(info.objectives)}; {best}. "
                f"Compare them with `evomerge pareto {where} --html front.html`, then "
                f"`evomerge export {where} --trial N --out DIR` (or --trial best --objective NAME)")
    name, direction = next(iter(info.objectives.items()))
    return (f"best: {_best_of(trials, name, direction)}; export it with "
            f"`evomerge export {where} --trial best --out DIR`")


def _best_of(trials, name: str, direction: str) -> str:
    from evomerge.runtime.records import best_trial

    best = best_trial(trials, name, direction)
    if best is None:
        return f"no candidate with a value for {name}"
    return f"candidate {best.number} with {name} = {best.objectives[name]:.4g}"
