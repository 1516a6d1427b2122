"""`evomerge eval MODEL --task NAME...`: score one checkpoint on fitness tasks."""

from __future__ import annotations

from pathlib import Path

import typer

from evomerge.commands import user_errors
from evomerge.errors import EvomergeError


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("eval")(eval_model)


def eval_model(
    model: str = typer.Argument(..., help="model folder or zoo:NAME"),
    task: list[str] = typer.Option(..., "--task", "-t", help="task name (fitness/NAME.yaml), YAML path, or an lm-eval mapping '{lm_eval: NAME, include_path: DIR, metric: M, splits: {...}}'; repeatable"),
    split: str = typer.Option("test", "--split", help="train | validation | test"),
    json_out: Path = typer.Option(None, "--json", help="write per-item scores to this JSON file"),
    limit: int = typer.Option(None, "--limit", min=1, help="score only the first N items per task"),
    batch_size: int = typer.Option(128, "--batch-size", min=1, help="requests per forward pass (hf)"),
    backend_name: str = typer.Option("hf", "--backend", help="hf (transformers, the exact reference) | vllm"),
) -> None:
    """Print a table of task scores (greedy, deterministic)."""
    with user_errors():
        import json
        import os
        import time

        from rich.console import Console
        from rich.table import Table

        from evomerge.evaluate.backend import backend_class
        from evomerge.evaluate.task_loading import load_task_ref
        from evomerge.evaluate.tasks import SPLITS

        if split not in SPLITS:
            raise typer.BadParameter(f"{split!r} is not one of {', '.join(SPLITS)}", param_hint="--split")
        if json_out is not None:  # checked now: the scores must not be lost after the evaluation
            if not json_out.parent.is_dir():
                raise EvomergeError(f"--json: folder {json_out.parent} does not exist")
            if json_out.is_dir():
                raise EvomergeError(f"--json: {json_out} is a folder, not a file name")
            if not os.access(json_out.parent, os.W_OK):
                raise EvomergeError(f"--json: folder {json_out.parent} is not writable")
        cls = backend_class(backend_name)
        tasks = [load_task_ref(ref, f"--task {ref}") for ref in task]  # all checked before the model loads
        backend = cls.from_pretrained(model, batch_size=batch_size)
        table = Table(title=f"{model} ({split})")
        for col in ("task", "metric", "score", "items", "seconds"):
            table.add_column(col, justify="left" if col in ("task", "metric") else "right")
        report = {"model": model, "split": split, "tasks": {}}
        for t in tasks:
            start = time.perf_counter()
            res = t.evaluate(backend, split, limit)
            secs = time.perf_counter() - start
            table.add_row(t.name, res.metric, f"{res.score:.4f}", str(len(res.item_scores)), f"{secs:.2f}")
            report["tasks"][t.name] = {"score": res.score, "metric": res.metric,
                                       "higher_is_better": res.higher_is_better, "seconds": secs,
                                       "item_scores": res.item_scores}
        Console().print(table)
        if json_out is not None:
            tmp = json_out.with_name(json_out.name + ".tmp")
            tmp.write_text(json.dumps(report, indent=1) + "\n")
            os.replace(tmp, json_out)
