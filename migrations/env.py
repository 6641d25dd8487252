"""Alembic environment: runs on a connection handed in by workflow.db.upgrade, or on
QMS_DATABASE_URL when alembic is called directly."""

from __future__ import annotations

from alembic import context

from workflow.db.engines import make_engine
from workflow.db.models import Base, modelled

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=modelled,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or None)
    with engine.begin() as conn:
        _run(conn)


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported; use `qms db upgrade`")
run_migrations_online()
