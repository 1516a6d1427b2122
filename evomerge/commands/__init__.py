"""CLI command groups, one module each; see evomerge/cli.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from evomerge.errors import EvomergeError


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn an EvomergeError into one line on stderr and a non-zero exit (no traceback)."""
    try:
        yield
    except EvomergeError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(err.exit_code) from None
