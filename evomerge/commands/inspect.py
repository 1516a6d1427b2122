"""`evomerge status`, `evomerge pareto`, `evomerge dashboard`: look at a run, finished or not."""

from __future__ import annotations

from pathlib import Path

import typer

from evomerge.commands import user_errors

RUN_HELP = "run directory (e.g. runs/NAME) or store URL (e.g. sqlite:///runs/NAME/store.db)"


def _open(run: str):
    """The run's store, read-only use; SQLite readers work beside the run's writer."""
    from evomerge.runtime.store import RunStore

    return RunStore.open(run, read_only=True)


def status(run: str = typer.Argument(..., help=RUN_HELP)) -> None:
    """Evaluations done / failed / running, best per objective, searcher, elapsed, throughput."""
    with user_errors():
        from rich.console import Console

        from evomerge.report.status import run_status, status_table

        store = _open(run)
        Console().print(status_table(run_status(store.info(), store.trials())))


def pareto(
    run: str = typer.Argument(..., help=RUN_HELP),
    objectives: str = typer.Option(None, "--objectives", help="comma-separated, e.g. math,words or ppl:min (default: the run's objectives)"),
    png: Path = typer.Option(None, "--png", help="also write a PNG plot here"),
    html: Path = typer.Option(None, "--html", help="also write a self-contained interactive HTML page here"),
    reference: str = typer.Option(None, "--reference", help="hypervolume reference point, one value per objective (default: worst seen, pushed out 10%)"),
) -> None:
    """The non-dominated trials as a table with recipe summaries and their hypervolume."""
    with user_errors():
        from rich.console import Console

        from evomerge.errors import EvomergeError
        from evomerge.report.points import front_data, parse_objectives
        from evomerge.report.table import front_table

        store = _open(run)
        info, trials = store.info(), store.trials()
        objs = parse_objectives(objectives, info, trials)
        ref = None
        if reference:
            try:
                ref = [float(v) for v in reference.split(",")]
            except ValueError:
                raise EvomergeError(f"--reference: {reference!r} is not a comma-separated list of numbers") from None
            if len(ref) != len(objs):
                raise EvomergeError(f"--reference: {len(ref)} values for {len(objs)} objectives")
        data = front_data(trials, objs, ref, info.baselines)
        console = Console()
        if not data.trials:
            console.print(f"run {info.name}: no completed trials with {', '.join(o.name for o in objs)} yet")
            return
        console.print(front_table(data, title=f"run {info.name}: Pareto front"))
        title = f"evomerge run {info.name}: {' vs '.join(o.name for o in objs)} ({info.searcher})"
        if png:
            from evomerge.report.plot import plot_front

            console.print(f"plot: {plot_front(data, png, title)}")
        if html:
            from evomerge.report.html import write_html

            console.print(f"page: {write_html(data, html, title, run=run)}")


def dashboard(
    run: str = typer.Argument(..., help=RUN_HELP),
    host: str = typer.Option("127.0.0.1", help="address to bind; the default keeps it local to this machine"),
    port: int = typer.Option(8080, help="port to listen on"),
) -> None:
    """Serve optuna-dashboard on the run's store, read-only (blocks until Ctrl-C)."""
    with user_errors():
        from evomerge.errors import EvomergeError

        try:
            from optuna_dashboard import run_server
        except ImportError:
            raise EvomergeError("dashboard: optuna-dashboard is not installed (pip install 'evomerge[dashboard]')") from None
        store = _open(run)
        typer.echo(f"optuna-dashboard on http://{host}:{port}/ for {store.url} (read-only)", err=True)
        run_server(store.storage, host=host, port=port)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("status")(status)
    app.command("pareto")(pareto)
    app.command("dashboard")(dashboard)
