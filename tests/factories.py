"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from workflow import clock, rules
from workflow.cli import main
from workflow.db import engines as db
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.signatures.mac import VouchedSignature

#: the server key the command-line tests run `qms` with
CLI_KEY_HEX = "44" * 32
#: PostgreSQL: the schema owner the test databases are migrated as, and the runtime role the
#: tests' engines and commands act as (docs/operations.md; CI creates both, and so does
#: :func:`ensure_roles` where the test URL's user may create roles)
OWNER_ROLE = os.environ.get("QMS_TEST_OWNER_ROLE") or "qms_owner"
RUNTIME_ROLE = os.environ.get("QMS_TEST_RUNTIME_ROLE") or "qms_runtime"


def anchor_key_file(path: Path) -> Path:
    """Write a random Ed25519 anchor key file (``a1``) at ``path``: keys never appear by
    themselves (``qms init`` on a new database and ``qms keys create`` make them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"a1 {secrets.token_hex(32)}\n")
    return path


def is_pg(url: str) -> bool:
    return url.startswith("postgresql")


def as_user(url: str, user: str) -> str:
    """``url`` connecting as ``user`` (trust or the same password: tests only)."""
    return make_url(url).set(username=user).render_as_string(hide_password=False)


def run_alembic(dbe: Any, verb: str, revision: str) -> None:
    """``command.upgrade/downgrade`` (``verb``) to ``revision`` on ``dbe``, the way
    ``workflow.db.upgrade`` runs them (in one transaction on the given connection)."""
    cfg = db.alembic_config(dbe.url.render_as_string(hide_password=False))
    with dbe.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, verb)(cfg, revision)


def owner_url(url: str) -> str:
    """The schema owner's URL of a test database given by its runtime URL (PostgreSQL), or
    ``url`` itself (SQLite, or a URL that does not connect as the runtime role)."""
    if is_pg(url) and make_url(url).username == RUNTIME_ROLE:
        return as_user(url, OWNER_ROLE)
    return url


def ensure_roles(admin_url: str) -> None:
    """Create the owner and runtime roles if they are missing (concurrent runs may race:
    a role created meanwhile is fine)."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            for role in (OWNER_ROLE, RUNTIME_ROLE):
                c.execute(text(
                    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
                    f"'{role}') THEN CREATE ROLE \"{role}\" LOGIN NOSUPERUSER NOCREATEDB "
                    "NOCREATEROLE; END IF; EXCEPTION WHEN duplicate_object THEN NULL; END $$"))
    finally:
        admin.dispose()


def new_pg_database(admin_url: str, name: str) -> str:
    """An empty PostgreSQL database owned by the schema owner (so is its ``public`` schema,
    PostgreSQL 15+); returns its runtime URL (:func:`owner_url` gives the owner's)."""
    ensure_roles(admin_url)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}" OWNER "{OWNER_ROLE}"'))
    finally:
        admin.dispose()
    return as_user(admin_url.rsplit("/", 1)[0] + "/" + name, RUNTIME_ROLE)


def acting_engine(url: str, admin_url: str, **kwargs: Any) -> Any:
    """An engine on ``url``'s database that logs in as ``admin_url``'s user (a superuser) and
    acts as the runtime role (``SET ROLE`` on every connection): the application's statements
    have the runtime role's privileges only, while :func:`dba` can still return to the
    administrator in the same transaction. SQLite: a plain engine."""
    if not is_pg(url):
        return db.make_engine(url, **kwargs)
    dbe = db.make_engine(as_user(url, make_url(admin_url).username or "postgres"), **kwargs)

    @event.listens_for(dbe, "connect")
    def _as_runtime(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f'SET ROLE "{RUNTIME_ROLE}"')
        cur.close()
        dbapi_conn.commit()  # a session setting that outlives the connect transaction

    return dbe


def drop_pg_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def dba(engine: Any) -> Iterator[Session]:
    """A unit whose statements run with the database administrator's rights, as a DBA or an
    attacker holding them could: on PostgreSQL the tests' engine connects as a superuser and
    acts as the runtime role (``SET ROLE``); here it drops back to the superuser (``RESET
    ROLE``) and returns to the runtime role afterwards (a failed statement rolls the unit and
    the role change back). On SQLite every connection may do anything anyway."""
    with engine.unit() as s:
        pg = s.get_bind().dialect.name == "postgresql"
        role = s.execute(text("SELECT current_user")).scalar_one() if pg else None
        if pg:
            s.execute(text("RESET ROLE"))
        yield s
        if pg:
            s.execute(text(f'SET ROLE "{role}"'))


@contextmanager
def statements(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    """The statements the engine's connection runs meanwhile, as (SQL, parameters), for the
    query-plan tests to EXPLAIN exactly what the code sent."""
    conn = engine.sessions.kw["bind"]
    seen: list[tuple[str, Any]] = []

    def grab(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: Any) -> None:
        seen.append((statement, params))

    event.listen(conn, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(conn, "before_cursor_execute", grab)


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a PostgreSQL ``EXPLAIN (FORMAT JSON)`` plan, depth first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def sign(username: str) -> VouchedSignature:
    """A signature whose credentials the test vouches for (identity checks are tested apart)."""
    return VouchedSignature(username, method="test")


#: the document the shipped CAPA's closure requires training on (definitions/capa.yaml)
CAPA_SOP = "SOP-CAPA-001"
TRAINER = "trainer.fx"


def give_training(engine: Any, trainee: str, document: str = CAPA_SOP,
                  version: str = "1") -> str:
    """DELIBERATELY give ``trainee`` a completed training on ``document`` (the engine's way:
    assigned, signed "Read and understood" by the trainee, verified by a trainer), for tests
    that take a training-gated step without being about training - closing a CAPA requires
    training on the CAPA SOP (R-TRN-13). The trainee must hold the employee role. Returns
    the training record's number ("" when they were trained already)."""
    with engine.reader() as s:
        workflows = rules.training_workflows(engine.registry.newest(s).values())
        if rules.trained_on(s, workflows, trainee, document, version, clock.now()):
            return ""  # already trained (the helper is called once per closing, say)
    with engine.unit() as s:
        if identity.find_user(s, TRAINER) is None:
            system = identity.system_user(s)
            u = identity.create_user(s, TRAINER, "Fixture Trainer", actor=system,
                                     reason="test fixture: a trainer")
            enablement.enable_for_system(s, u, reason="test fixture")
            for role in ("trainer", "training_coordinator", "employee"):
                identity.grant_role(s, u, role, actor=system, reason="test fixture")
    r = engine.start("training_assignment", TRAINER, {
        "title": f"{document} version {version}", "document": document,
        "document_version": version, "trainee": trainee,
        "due_date": clock.now().date().isoformat()})
    engine.fire(r.number, "complete", trainee, signature=sign(trainee))
    engine.fire(r.number, "verify", TRAINER, signature=sign(TRAINER))
    return r.number


class Qms:
    """Runs ``qms`` commands in-process on one database; closes the engines they open."""

    def __init__(self, url: str, key_hex: str = CLI_KEY_HEX,
                 env: dict[str, str] | None = None) -> None:
        self.url = url
        base = {"QMS_DATABASE_URL": url, "QMS_SIGNATURE_KEY": key_hex}
        if owner_url(url) != url:  # PostgreSQL: migrations as the owner, the rest as runtime
            base["QMS_MIGRATION_DATABASE_URL"] = owner_url(url)
        self.runner = CliRunner(env={**base, **(env or {})})
        self.engines: list[Any] = []

    def __call__(self, *args: str, input: str | None = None) -> Result:
        real = db.make_engine

        def tracking(*a: Any, **kw: Any) -> Any:
            self.engines.append(real(*a, **kw))
            return self.engines[-1]

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(db, "make_engine", tracking)
            return self.runner.invoke(main, list(args), input=input)

    def close(self) -> None:
        for e in self.engines:
            e.dispose()
        self.engines.clear()
