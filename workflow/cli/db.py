"""``qms init``, ``qms db ...`` and ``qms stats``: create, upgrade and inspect the database."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
from sqlalchemy import Engine as DBEngine
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from workflow import clock
from workflow.audit.integrity import seal_existing
from workflow.bootstrap import load_definitions, register_this_system
from workflow.cli.common import CliError, checked_engine, friendly, operator, safe_url
from workflow.config import settings
from workflow.db import engines as db
from workflow.db import roles
from workflow.db.models import AuditEvent, Record, Signature, Task
from workflow.demo import seed
from workflow.engine.core import Engine
from workflow.errors import KeyProblem
from workflow.scheduling import golive
from workflow.signatures.keys import create_missing_keys, database_has_history
from workflow.signatures.part11 import Part11Verifier

T = TypeVar("T")


@click.group("db")
def db_group() -> None:
    """Schema management (Alembic is the only way the schema changes)."""


def _migrate(revision: str = "head") -> str | None:
    """Run the migrations as the schema owner (``QMS_MIGRATION_DATABASE_URL``, default the
    application's URL), then, on PostgreSQL, grant the runtime role what it needs and no
    more (``QMS_RUNTIME_ROLE``; workflow/db/roles.py). Returns the revision reached."""
    s = settings()
    owner = db.make_engine(s.migration_database_url or db.default_database_url(s))
    try:
        role = roles.runtime_role(s)
        try:
            granted = db.upgrade(owner, revision, runtime_role=role)
        except roles.RoleError as exc:
            raise CliError(str(exc)) from None
        if granted:
            click.echo(f"runtime role {role}: SELECT and INSERT only on the append-only tables "
                       f"({', '.join(roles.APPEND_ONLY)}); `qms db check-roles` shows it",
                       err=True)
        elif owner.dialect.name == "postgresql" and role is None:
            click.echo("note: the application and the migrations use one database role, which "
                       "can change the audit trail; see docs/operations.md (two roles)", err=True)
        return db.current_revision(owner)
    finally:
        owner.dispose()


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@friendly
def db_upgrade(revision: str) -> None:
    """Create or upgrade the database schema (as the schema owner), then grant the runtime
    role its privileges (PostgreSQL)."""
    engine, dbe = checked_engine(check_schema=False)
    current = _migrate(revision)
    click.echo(f"database at revision {current} ({safe_url(dbe)})")
    if current == db.head_revision():
        _seal(engine)


@db_group.command("grant-runtime")
@click.argument("role")
@friendly
def db_grant_runtime(role: str) -> None:
    """Grant ROLE what the application needs at runtime and nothing more: SELECT and INSERT
    only on the append-only tables, read and write on the others (PostgreSQL; run as the
    schema owner through QMS_MIGRATION_DATABASE_URL; idempotent)."""
    s = settings()
    owner = db.make_engine(s.migration_database_url or db.default_database_url(s))
    try:
        if owner.dialect.name != "postgresql":
            raise CliError("database roles are PostgreSQL's; SQLite relies on its append-only "
                           "triggers alone")
        try:
            statements, report = db.grant_runtime(owner, role)
        except roles.RoleError as exc:
            raise CliError(str(exc)) from None
        for statement in statements:
            click.echo(statement)
    finally:
        owner.dispose()
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        for p in report.problems:
            click.echo(f"NOT OK: {p}", err=True)
        sys.exit(1)


@db_group.command("check-roles")
@click.option("--role", default=None,
              help="The role to check (default: QMS_RUNTIME_ROLE, else the role "
                   "QMS_DATABASE_URL connects as).")
@friendly
def db_check_roles(role: str | None) -> None:
    """Report what the runtime role can do on the tables; exit 1 if it may UPDATE, DELETE or
    TRUNCATE an append-only table, owns the schema or a table, or is a superuser."""
    _, dbe = checked_engine(check_schema=False)
    if dbe.dialect.name != "postgresql":
        click.echo("SQLite has no database roles: the append-only triggers are the protection "
                   "(`qms verify-audit` checks them)")
        return
    with dbe.connect() as conn:
        report = roles.check(conn, role or roles.runtime_role())
    for line in report.lines():
        click.echo(line)
    if report.ok:
        click.echo(f"OK: {report.role} cannot change, delete or truncate the append-only tables "
                   "or drop their triggers")
        return
    for p in report.problems:
        click.echo(f"NOT OK: {p}", err=True)
    sys.exit(1)


def _seal(engine: Engine) -> None:
    """Seal the security rows an older version wrote without a seal (migration 0008)."""
    done = seal_existing(engine, operator())
    for table, rows in done.items():
        click.echo(f"sealed {len(rows)} {table} row(s) written before the security seals")


@db_group.command("seal")
@friendly
def db_seal() -> None:
    """Seal the users, role grants, API tokens and chain heads written before the security
    seals existed (run by `qms db upgrade` and `qms init`; idempotent, audited)."""
    engine, _ = checked_engine()
    _seal(engine)
    click.echo("every security row carries its seal")


@db_group.command("current")
def db_current() -> None:
    """Show the schema revision of the database."""
    dbe = db.make_engine()
    click.echo(db.current_revision(dbe) or "empty (run `qms db upgrade`)")


@click.command("init")
@click.option("--demo", is_flag=True, help="Also add demo users and a dozen demo records.")
@friendly
def init(demo: bool) -> None:
    """Create or upgrade the database and load the shipped definitions (safe to re-run).

    On a database without audit events or signatures, creates the key files that are missing
    (the HMAC signature key and the Ed25519 anchor key); on one with history a missing key
    stops the command (restore it from the backup of the keys)."""
    make_keys()
    engine, dbe = checked_engine(check_schema=False)
    current = _migrate()
    click.echo(f"database ready at revision {current} ({safe_url(dbe)})")
    _seal(engine)
    for line in load_definitions(engine):
        click.echo(f"  {line}")
    entry = register_this_system(engine)
    if entry:
        click.echo(f"  {entry}: this QMS ({engine.system_name}) registered in the system "
                   "inventory, for its system owner to complete and QA to approve")
    # the scheduler opens no periodic record for an occurrence before this (QMS_GO_LIVE wins)
    golive.record(engine, clock.now())
    live = golive.go_live(engine)
    assert live is not None
    click.echo(f"go-live {live:%Y-%m-%d %H:%M} UTC: the scheduler does not back-fill before it")
    if demo:
        # demo records are seeded with vouched signatures (method "demo-seed"); people sign
        # with their own password (and authenticator) in the UI and API
        engine.verifier = Part11Verifier(engine.signing_key, allow_vouched=True)
        for line in seed(engine):
            click.echo(line)


def _probe(fn: Callable[[DBEngine], T]) -> T:
    """``fn`` on a plain engine of the application's database (no keys needed)."""
    probe = db.make_engine(db.default_database_url(settings()))
    try:
        return fn(probe)
    except KeyProblem as exc:
        raise CliError(str(exc)) from None
    except OperationalError as exc:  # unreachable server, no such file...: one clear line
        raise CliError(f"cannot reach the database ({safe_url(probe)}): "
                       f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        probe.dispose()


def history() -> bool:
    """Whether the database holds audit events or signatures."""
    return _probe(database_has_history)


def make_keys(allow_new_anchor: bool = False) -> list[tuple[str, Path]]:
    """Create the missing key files where that is safe (workflow/signatures/keys.py)."""
    made = _probe(lambda probe: create_missing_keys(settings(), probe,
                                                    allow_new_anchor=allow_new_anchor))
    for kind, path in made:
        what = "HMAC signature key" if kind == "hmac" else "Ed25519 anchor key"
        click.echo(f"created the {what} {path}: back it up apart from the database "
                   "(docs/operations.md)", err=True)
    return made


@click.command("stats")
def stats() -> None:
    """Counts per table (a quick health check)."""
    engine, _ = checked_engine()
    with engine.reader() as s:
        for m in (Record, Task, Signature, AuditEvent):
            click.echo(f"{m.__tablename__:14} {s.execute(select(func.count()).select_from(m)).scalar_one()}")
