"""CLI command groups, one module each; see evomerge/cli.py."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Iterator

import typer

from evomerge.errors import EvomergeError


def _database_error(err: BaseException | None) -> BaseException | None:
    """The database error (a corrupted page, a lost server) behind ``err``, if any: Optuna wraps
    them in its own errors."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, sqlite3.DatabaseError) or (sa_exc is not None and isinstance(err, sa_exc.DatabaseError)):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def _first_line(err: BaseException) -> str:
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
        db_err = _database_error(err)
        if db_err is None:
            raise
        typer.echo(f"error: run store: database error ({_first_line(db_err)}); the store may be damaged", err=True)
        raise typer.Exit(2) from None
