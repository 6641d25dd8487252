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
from workflow.identity import acting

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
    try:
        engine, dbe = open_engine()
    except WorkflowError as exc:  # a malformed key file, a key provider that fails...
        raise CliError(str(exc)) from None
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


# ------------------------------------------------------------------ acting as a person


def acting_options(required: bool = True) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """``--as USER`` with the user's credentials (``--password-stdin``, ``--totp``), or
    ``--maintenance`` (workflow/identity/acting.py). ``required``: --as must be given unless
    in maintenance mode."""

    def deco(fn: Callable[P, R]) -> Callable[P, R]:
        for option in reversed([
            click.option("--as", "actor", default=None,
                         help="The person acting; asked for their password (and "
                              "authenticator code where they have one)."
                         + ("" if required else " Optional with --maintenance.")),
            click.option("--password-stdin", is_flag=True,
                         help="Read the password from the first line of standard input "
                              "(scripts) instead of asking on the terminal."),
            click.option("--totp", default=None,
                         help="Authenticator code (asked when needed and not given)."),
            click.option("--maintenance", is_flag=True,
                         help="Act without the person's credentials: only when "
                              "QMS_CLI_MAINTENANCE=1; every event records your OS user."),
        ]):
            fn = option(fn)
        return fn

    return deco


def act_as(engine: Engine, actor: str | None, *, password_stdin: bool, totp: str | None,
           maintenance: bool, command: str, required: bool = True) -> acting.Acting:
    """Establish who this run acts as and attribute every event it writes (the engine's unit
    of work carries "qms CLI, OS user ..." into each event's reason)."""
    os_user = getpass.getuser()
    if maintenance:
        if required and not actor:
            raise click.UsageError("--as USER is required (with --maintenance too)")
        who = acting.maintenance(engine, actor, os_user=os_user, command=command)
    else:
        if not actor:
            raise click.UsageError("--as USER is required: the command acts as a named "
                                   "person, with their password")
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt(f"Password for {actor}", hide_input=True, err=True)

        def ask_code() -> str:
            if totp:
                return totp
            if password_stdin:  # the second line, when a script gives one
                line = sys.stdin.readline().rstrip("\r\n")
                if line:
                    return line
            return str(click.prompt(f"Authenticator code for {actor}", err=True))

        who = acting.authenticate(engine, actor, password, ask_code, os_user=os_user,
                                  command=command)
    engine.uow.attribution = who.attribution
    return who
