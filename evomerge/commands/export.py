"""`evomerge export RUN --trial ID|best --out DIR`: ship a trial as a checkpoint + recipe + card."""

from __future__ import annotations

from pathlib import Path

import typer

from evomerge.commands import user_errors


def export(
    run: str = typer.Argument(..., help="run directory (e.g. runs/NAME) or store URL"),
    trial: str = typer.Option("best", "--trial", help="trial number, or 'best'"),
    objective: str = typer.Option(None, "--objective", help="objective that picks 'best' (default: the run's first)"),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (must not exist unless --force)"),
    force: bool = typer.Option(False, "--force", help="replace OUT if it exists"),
    no_eval: bool = typer.Option(False, "--no-eval", help="skip re-scoring on the validation and test splits"),
    shard_size_mb: int = typer.Option(2048, "--shard-size-mb", min=1, help="maximum safetensors shard size"),
    test_limit: int = typer.Option(None, "--test-limit", min=1,
                                   help="score only the first N test items (default: the whole test split)"),
) -> None:
    """HF checkpoint, recipe.yaml (rebuilds bit for bit), mergekit.yaml (parameter recipes), README model card."""
    with user_errors():
        from evomerge.export import export_trial

        done = export_trial(run, out, which=trial, objective=objective, force=force, evaluate=not no_eval,
                            max_shard_bytes=shard_size_mb * 1024 * 1024, test_limit=test_limit)
        typer.echo(f"exported trial {done.trial.number} ({done.chosen_by}) to {done.path}")
        for split, scores in done.scores.items():
            typer.echo(f"  {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("export")(export)
