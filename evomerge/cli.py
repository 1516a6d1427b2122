"""evomerge: search for the best way to merge fine-tuned checkpoints, then export it."""

from __future__ import annotations

import importlib
import sys

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


def main(args: list[str] | None = None) -> None:
    """The `evomerge` command: usage errors (unknown option, missing argument, bad value) are one
    line on stderr and exit 2, like every other error."""
    try:  # typer 0.2x carries its own copy of click
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import exceptions as click

    try:
        code = app(args=args, standalone_mode=False)
    except click.NoArgsIsHelpError:  # the help is printed already
        code = 0
    except click.UsageError as err:
        where = f"{err.ctx.command_path}: " if err.ctx else ""
        message = " ".join(err.format_message().split())
        typer.echo(f"error: {where}{message} (see --help)", err=True)
        code = 2
    except typer.Abort:  # end of input at a prompt
        typer.echo("aborted", err=True)
        code = 1
    except click.ClickException as err:
        typer.echo(f"error: {' '.join(err.format_message().split())}", err=True)
        code = err.exit_code
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
