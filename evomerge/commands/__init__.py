"""CLI command groups, one module each; see evomerge/cli.py."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Iterator

import typer

from evomerge.errors import EvomergeError


def _database_error(err: BaseException) -> bool:
    """An error of the store's database (a corrupted page, a lost server), not a bug of ours."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return isinstance(err, sqlite3.DatabaseError) or (sa_exc is not None and isinstance(err, sa_exc.DatabaseError))


def first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn an EvomergeError (or a store database error) into one line on stderr and a non-zero
    exit (no traceback)."""
    try:
        yield
    except EvomergeError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(err.exit_code) from None
    except Exception as err:
        if not _database_error(err):
            raise
        typer.echo(f"error: run store: database error ({first_line(err)}); the file may be damaged", err=True)
        raise typer.Exit(2) from None
