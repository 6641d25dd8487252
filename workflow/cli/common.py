"""What every ``qms`` command shares: the engine (refused clearly when the schema is missing
or old), domain errors as one line on stderr with exit status 1 (2 for usage errors), and the
reason attributed to the operating-system account that ran the command."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click
from sqlalchemy.engine import Engine as DBEngine

from workflow.bootstrap import open_engine
from workflow.db import engines as db
from workflow.engine.core import Engine
from workflow.errors import DefinitionError, WorkflowError

P = ParamSpec("P")
R = TypeVar("R")


class CliError(click.ClickException):
    """One line on stderr, ``error: ...``, exit status 1 (like domain errors)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def safe_url(dbe: DBEngine) -> str:
    """The database URL without its password."""
    return dbe.url.render_as_string(hide_password=True)


def checked_engine(*, check_schema: bool = True) -> tuple[Engine, DBEngine]:
    """The engine; unless initialising, refuse clearly when the schema is missing or old."""
    engine, dbe = open_engine()
    if check_schema:
        try:
            current = db.current_revision(dbe)
        except Exception as exc:  # unreachable server, bad URL...: one clear line
            raise CliError(f"cannot reach the database ({safe_url(dbe)}): "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        head = db.head_revision()
        if current != head:
            state = ("the database is not initialised" if current is None else
                     f"the database schema is at revision {current}, the code needs {head}")
            raise CliError(f"{state}: run `qms init` (or `qms db upgrade`) first")
    return engine, dbe


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn domain errors into one line on stderr and exit status 1."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except DefinitionError as exc:
            for p in exc.problems:
                click.echo(str(p), err=True)
            sys.exit(1)
        except WorkflowError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


def cli_reason(reason: str) -> str:
    """Attribute command-line administration to the operating-system account that ran it."""
    if not reason.strip():
        raise click.UsageError("--reason must say why")
    return f"{reason.strip()} [{operator()}]"


def operator() -> str:
    """Who ran the command, as recorded with what it changes."""
    return f"qms CLI, OS user {getpass.getuser()}"
