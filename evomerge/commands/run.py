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

        store, session, pool = open_run(experiment, resume, workers, runs_dir, address)
        _search(store, session, pool, progress)


def _search(store, session, pool, progress: bool) -> None:
    from evomerge.runtime.loop import run_loop

    budget = int(store.meta["budget"])
    try:
        summary = run_loop(store, session, pool, budget, show_progress=progress)
    except KeyboardInterrupt:
        done = sum(r.state != "running" for r in store.trials())
        typer.echo(f"\ninterrupted: {done} evaluations are stored; continue with "
                   f"`evomerge run --resume {_where(store)}`", err=True)
        raise typer.Exit(INTERRUPTED) from None
    finally:
        pool.close()
    typer.echo(f"{store.name}: {summary.total}/{budget} evaluations ({summary.failed} failed); "
               f"stopped: {summary.stopped}")
    if hasattr(pool, "summary"):             # the Ray pool: utilization, replaced workers
        typer.echo(pool.summary())
    best = _best_line(store)
    if best:
        typer.echo(best)
    from evomerge.runtime.references import climb_line, comparison_lines

    climb = climb_line(store)
    for line in ([climb] if climb else []) + comparison_lines(store):
        typer.echo(line)


def _where(store) -> str:
    return store.meta.get("run_dir") or store.url


def _best_line(store) -> str | None:
    info, trials = store.info(), [t for t in store.trials() if t.state == "complete"]
    if not trials:
        return None
    name, direction = next(iter(info.objectives.items()))
    pick = max if direction == "maximize" else min
    best = pick(trials, key=lambda t: t.objectives[name])
    return (f"best: candidate {best.number} with {name} = {best.objectives[name]:.4g}; export it with "
            f"`evomerge export {_where(store)} --trial best --out DIR`")
