"""``qms init``, ``qms db ...`` and ``qms stats``: create, upgrade and inspect the database."""

from __future__ import annotations

import click
from sqlalchemy import func, select

from workflow.audit.integrity import seal_existing
from workflow.bootstrap import load_definitions
from workflow.cli.common import checked_engine, friendly, operator, safe_url
from workflow.db import engines as db
from workflow.db.models import AuditEvent, Record, Signature, Task
from workflow.demo import seed
from workflow.engine.core import Engine
from workflow.signatures.part11 import Part11Verifier


@click.group("db")
def db_group() -> None:
    """Schema management (Alembic is the only way the schema changes)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Create or upgrade the database schema."""
    engine, dbe = checked_engine(check_schema=False)
    db.upgrade(dbe, revision)
    click.echo(f"database at revision {db.current_revision(dbe)} ({safe_url(dbe)})")
    if db.current_revision(dbe) == db.head_revision():
        _seal(engine)


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
    """Create or upgrade the database and load the shipped definitions (safe to re-run)."""
    engine, dbe = checked_engine(check_schema=False)
    db.upgrade(dbe)
    click.echo(f"database ready at revision {db.current_revision(dbe)} ({safe_url(dbe)})")
    _seal(engine)
    for line in load_definitions(engine):
        click.echo(f"  {line}")
    if demo:
        # demo records are seeded with vouched signatures (method "demo-seed"); people sign
        # with their own password (and authenticator) in the UI and API
        engine.verifier = Part11Verifier(engine.signing_key, allow_vouched=True)
        for line in seed(engine):
            click.echo(line)


@click.command("stats")
def stats() -> None:
    """Counts per table (a quick health check)."""
    engine, _ = checked_engine()
    with engine.reader() as s:
        for m in (Record, Task, Signature, AuditEvent):
            click.echo(f"{m.__tablename__:14} {s.execute(select(func.count()).select_from(m)).scalar_one()}")
