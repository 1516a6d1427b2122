"""`evomerge merge RECIPE.yaml --out DIR`: materialize a recipe (ours or a mergekit config)."""

from __future__ import annotations

from pathlib import Path

import typer

from evomerge.commands import user_errors


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("merge")(merge)


def merge(
    recipe: Path = typer.Argument(..., help="recipe YAML (evomerge recipe or mergekit config)"),
    out: Path = typer.Option(..., "--out", "-o", help="output directory for the HF checkpoint"),
    force: bool = typer.Option(False, "--force", help="replace OUT if it exists"),
    format: str = typer.Option("auto", "--format", help="auto | evomerge | mergekit"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                      help="accept pickled .bin sources (loaded weights-only)"),
    shard_size_mb: int = typer.Option(2048, "--shard-size-mb", min=1, help="maximum shard size"),
) -> None:
    """Write a complete HF checkpoint (sharded safetensors, config, tokenizer) for a recipe."""
    with user_errors():
        import signal
        import sys
        import time

        # a plain `kill` ends the merge like Ctrl-C: the temporary output is removed
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

        from evomerge.engine import merge_to_disk
        from evomerge.mergekit_config import load_any_recipe

        r = load_any_recipe(recipe, format=format)
        start = time.perf_counter()
        path = merge_to_disk(r, out, force=force, allow_pickle=allow_pickle,
                             max_shard_bytes=shard_size_mb * 1024 * 1024)
        typer.echo(f"wrote {path} ({time.perf_counter() - start:.1f} s)")
