"""Database engines and sessions: SQLite (WAL) by default, PostgreSQL in production.

Write units on SQLite start with ``BEGIN IMMEDIATE`` so that two writers queue on the
database lock (``busy_timeout``) instead of failing when a read lock cannot be upgraded;
read-only sessions use a plain deferred ``BEGIN`` and never block writers under WAL.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from workflow import config
from workflow.db import outage, roles
from workflow.resources import migrations_dir

log = logging.getLogger(__name__)

WRITE = {"qms_write": True}


def default_database_url(settings: config.Settings | None = None) -> str:
    """QMS_DATABASE_URL, else a SQLite file in QMS_INSTANCE_DIR (created if missing)."""
    s = settings if settings is not None else config.settings()
    if s.database_url:
        return s.database_url
    instance = s.instance_dir
    instance.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{instance / 'qms.db'}"


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    url = url or default_database_url()
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            raise ValueError("use a SQLite file: the in-memory database is one per connection")
        kwargs.setdefault("connect_args", {}).setdefault("timeout", 30)
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        outage.watch(engine)
        return engine
    # no pool_pre_ping (a round trip on every checkout): a connection found dead when used
    # is invalidated with the pool's older ones (db/outage.py), and a unit that lost it
    # before its commit is run once more on a fresh one (UnitOfWork.retrying)
    if url.startswith("postgresql"):
        # a server that does not answer fails the request in seconds instead of the TCP
        # timeout's minutes (readiness probes and requests during an outage)
        kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", 10)
    engine = create_engine(url, **kwargs)
    outage.watch(engine)  # outages logged once, their connections dropped (db/outage.py)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # let SQLAlchemy's "begin" event below decide how transactions start
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("qms_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def is_sqlite(engine_or_session: Engine | Session) -> bool:
    bind = engine_or_session.get_bind() if isinstance(engine_or_session, Session) else engine_or_session
    return bind.dialect.name == "sqlite"


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config(str(migrations_dir() / "alembic.ini"))
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head", *,
            runtime_role: str | None = None) -> list[str]:
    """Bring the schema to ``revision`` through Alembic: the only way the schema changes.
    ``engine`` connects as the schema owner; on PostgreSQL, ``runtime_role`` then gets its
    grants in the same transaction (:func:`workflow.db.roles.grant_runtime`; returned)."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        if runtime_role and roles.is_postgres(conn):
            return roles.grant_runtime(conn, runtime_role)
    return []


def grant_runtime(engine: Engine, role: str) -> tuple[list[str], roles.RoleReport]:
    """``qms db grant-runtime``: :func:`workflow.db.roles.grant_runtime` in a transaction of
    the schema owner's ``engine``, and the role's report after it."""
    with engine.begin() as conn:
        statements = roles.grant_runtime(conn, role)
        return statements, roles.check(conn, role)


def head_revision() -> str | None:
    """The newest revision the code ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
