"""evomerge: search for the best way to merge fine-tuned checkpoints, then export it."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)

# One module per command group in evomerge/commands/; each defines `register(app)`.
# Command modules import only typer at import time; heavy imports happen inside commands.
COMMAND_MODULES = [
    "merge",
    "zoo",
    "eval",
    "run",
    "inspect",
    "export",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"evomerge.commands.{_name}").register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
