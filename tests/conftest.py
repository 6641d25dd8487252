"""Test fixtures.

The schema is built once per run with ``alembic upgrade head`` (never ``create_all``), on a
temporary SQLite file, or on PostgreSQL when QMS_TEST_DATABASE_URL is set. Each test runs in
a transaction that is rolled back; the engine's own commits become SAVEPOINTs
(``join_transaction_mode="create_savepoint"``). Tests marked ``committed`` get a database of
their own with real commits (concurrency tests).

Test folders are layers: tests/unit (no database, no Flask), tests/integration (database),
tests/web (Flask client), tests/e2e (browser). A test file outside them fails collection.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from tests.factories import (
    OWNER_ROLE,
    RUNTIME_ROLE,
    acting_engine,
    as_user,
    ensure_roles,
    new_pg_database,
    owner_url,
)
from workflow import clock
from workflow import config as qms_config
from workflow.bootstrap import action_kinds, role_hooks
from workflow.db import engines as db
from workflow.engine.core import Engine
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.registry import Registry
from workflow.spec.load import load_directory

pytest_plugins = ["tests.traceability"]  # requirement IDs -> tests (docs/requirements.yaml)

LAYERS = ("unit", "integration", "web", "e2e")
# fixtures that need a database (directly or through another fixture): not in tests/unit
DATABASE_FIXTURES = frozenset({
    "database_url", "db_engine", "engine", "committed_url", "committed_engine", "make_user",
    "people", "app", "client", "account",
})
TEST_KEY = bytes.fromhex("11" * 32)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        rel = Path(str(item.fspath)).relative_to(root)
        layer = rel.parts[0] if len(rel.parts) > 1 else None
        if layer not in LAYERS:
            raise pytest.UsageError(f"{rel}: tests must live in one of tests/{{{','.join(LAYERS)}}}")
        item.add_marker(getattr(pytest.mark, layer))
        if layer == "unit":
            # fixturenames is the closure: a fixture that itself needs the database counts too
            uses = DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            if uses:
                raise pytest.UsageError(f"{item.nodeid}: tests/unit may not use a database "
                                        f"(fixture {', '.join(sorted(uses))}); move it to tests/integration")


def pytest_configure(config: pytest.Config) -> None:
    for layer in LAYERS:
        config.addinivalue_line("markers", f"{layer}: tests in tests/{layer}")


# ------------------------------------------------------------------ database


def _is_pg(url: str) -> bool:
    return url.startswith("postgresql")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test database's URL. PostgreSQL (QMS_TEST_DATABASE_URL, a superuser: it creates
    databases and roles): the schema is recreated owned by the schema owner role, migrated
    as that role and granted to the runtime role (tests/factories.py OWNER_ROLE,
    RUNTIME_ROLE), as in production (docs/operations.md)."""
    url = os.environ.get("QMS_TEST_DATABASE_URL")
    if url:
        if not _is_pg(url):
            raise pytest.UsageError("QMS_TEST_DATABASE_URL must be a postgresql+psycopg:// URL")
        ensure_roles(url)
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            c.execute(text(f'CREATE SCHEMA public AUTHORIZATION "{OWNER_ROLE}"'))
        admin.dispose()
        dbe = db.make_engine(as_user(url, OWNER_ROLE))
        db.upgrade(dbe, runtime_role=RUNTIME_ROLE)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        dbe = db.make_engine(url)
        db.upgrade(dbe)
    dbe.dispose()
    yield url


@pytest.fixture(scope="session")
def db_engine(database_url: str) -> Iterator[Any]:
    """The engine the tests' Engine runs on. PostgreSQL: it logs in as the superuser of
    QMS_TEST_DATABASE_URL but acts as the runtime role (``SET ROLE`` on every connection), so
    the application's statements have the runtime role's privileges only, while a tamper test
    can still act as the database administrator in the same transaction
    (:func:`tests.factories.dba`)."""
    dbe = acting_engine(database_url, database_url)
    yield dbe
    dbe.dispose()


@pytest.fixture(scope="session")
def shipped_definitions() -> dict[str, Any]:
    return load_directory()


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing() -> None:
    from workflow.identity import passwords

    passwords.use_fast_hashing_for_tests()


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test reads the ``QMS_`` variables afresh (workflow.config caches them per
    process), also after it changes one with ``monkeypatch.setenv``/``delenv``: a fixture
    may have built an Engine (and so read the settings) before the test sets its variable."""
    qms_config.reset()
    for name in ("setenv", "delenv"):
        change = getattr(monkeypatch, name)

        def change_and_reset(*args: Any, _change: Callable[..., None] = change,
                             **kwargs: Any) -> None:
            _change(*args, **kwargs)
            qms_config.reset()

        setattr(monkeypatch, name, change_and_reset)
    yield
    qms_config.reset()


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[None]:
    clock.set(T0)
    yield
    clock.reset()


def _publish_all(engine: Engine, defs: dict[str, Any]) -> None:
    with engine.unit() as s:
        actor = identity.system_user(s)
        for d in defs.values():
            engine.registry.publish(s, d, actor, reason="test setup")


@pytest.fixture
def engine(db_engine: Any, shipped_definitions: dict[str, Any]) -> Iterator[Engine]:
    """An Engine on a rolled-back transaction, with the shipped definitions published."""
    conn = db_engine.connect()
    trans = conn.begin()
    sessions = sessionmaker(bind=conn, join_transaction_mode="create_savepoint",
                            expire_on_commit=False)
    eng = Engine(sessions, TEST_KEY, registry=Registry(), actions=action_kinds(),
                 role_hooks=role_hooks())
    _publish_all(eng, shipped_definitions)
    yield eng
    trans.rollback()
    conn.close()


@pytest.fixture
def committed_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of its own, migrated to head, with real commits (PostgreSQL: the
    runtime role's URL; :func:`tests.factories.owner_url` gives the schema owner's)."""
    if _is_pg(database_url):
        # owned by the schema owner, migrated as it; the URL connects as the runtime role
        name = f"qms_t_{uuid.uuid4().hex[:10]}"
        admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
        url = new_pg_database(database_url, name)
        dbe = db.make_engine(owner_url(url))
        db.upgrade(dbe, runtime_role=RUNTIME_ROLE)
    else:
        url = f"sqlite:///{tmp_path / 'committed.db'}"
        dbe = db.make_engine(url)
        db.upgrade(dbe)
    dbe.dispose()
    yield url
    if _is_pg(database_url):
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def committed_engine(committed_url: str, shipped_definitions: dict[str, Any]
                     ) -> Iterator[Engine]:
    dbe = db.make_engine(committed_url, pool_size=10) if _is_pg(committed_url) else \
        db.make_engine(committed_url)
    eng = Engine(db.make_sessionmaker(dbe), TEST_KEY, registry=Registry(),
                 actions=action_kinds(), role_hooks=role_hooks())
    _publish_all(eng, shipped_definitions)
    yield eng
    dbe.dispose()


# ------------------------------------------------------------------ factories


@pytest.fixture
def make_user(engine: Engine) -> Callable[..., str]:
    """``make_user("alice", "qa", "employee")`` creates an active user with those roles."""

    def make(username: str | None = None, *roles: str, full_name: str | None = None) -> str:
        username = username or f"user{secrets.token_hex(3)}"
        with engine.unit() as s:
            actor = identity.system_user(s)
            u = identity.create_user(s, username, full_name or username.title() + " Tester",
                                     email=f"{username}@example.com", actor=actor,
                                     reason="test")
            # test people can sign (the enablement itself is tested in test_enablement.py);
            # before the grants, so a user's last system event stays their last grant
            enablement.enable_for_system(s, u, reason="test")
            for r in roles:
                identity.grant_role(s, u, r, actor=actor, reason="test")
        return username

    return make


@pytest.fixture
def people(make_user: Callable[..., str]) -> dict[str, str]:
    """A small organisation: one person per role, two QA reviewers."""
    return {
        "emp": make_user("emma", "employee", full_name="Emma Employee"),
        "qa": make_user("quinn", "qa", "employee", full_name="Quinn QA"),
        "qa2": make_user("quentin", "qa", "employee", full_name="Quentin QA"),
        "owner": make_user("olga", "capa_owner", "employee", full_name="Olga Owner"),
        "po": make_user("paul", "process_owner", "employee", full_name="Paul Process-Owner"),
    }
