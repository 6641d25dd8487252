"""PostgreSQL role separation (workflow/db/roles.py, docs/operations.md): the application runs
as a runtime role that may not UPDATE, DELETE or TRUNCATE the append-only tables nor drop or
disable their triggers; `qms db check-roles` says what a role can do; verify-audit names an
application that runs as a role that could. SQLite has no roles (its triggers are checked by
tests/integration/test_tamper.py); the commands say so there."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from tests.factories import (
    OWNER_ROLE,
    RUNTIME_ROLE,
    Qms,
    dba,
    drop_pg_database,
    new_pg_database,
    owner_url,
)
from workflow.audit import integrity
from workflow.db import engines as db
from workflow.db import roles
from workflow.engine.core import Engine


def _pg(engine: Engine) -> bool:
    with engine.reader() as s:
        return s.get_bind().dialect.name == "postgresql"


@pytest.fixture
def pg(engine: Engine) -> Engine:
    if not _pg(engine):
        pytest.skip("database roles are PostgreSQL's (SQLite: see the SQLite tests below)")
    return engine


REFUSED = [f"UPDATE {t} SET id = id" for t in roles.APPEND_ONLY] + \
    [f"DELETE FROM {t}" for t in roles.APPEND_ONLY] + \
    [f"TRUNCATE {t} CASCADE" for t in roles.APPEND_ONLY] + \
    [f"ALTER TABLE {t} DISABLE TRIGGER {t}_append_only" for t in roles.APPEND_ONLY] + \
    [f"DROP TRIGGER {t}_append_only ON {t}" for t in roles.APPEND_ONLY] + \
    ["SET session_replication_role = replica", "DROP TABLE audit_events CASCADE",
     "CREATE TABLE forged (id int)"]
# (SET ROLE is decided by the login role: the tests' engine logs in as a superuser, so it is
# tested on a real runtime login below)


@pytest.mark.parametrize("statement", REFUSED)
def test_the_runtime_role_may_not_change_the_append_only_tables(pg, people, statement):
    """R-SEC-42 R-P11-10e-3 R-P11-10c-1 R-A11-12-1: as the application's database
    role (what someone with its credentials has), PostgreSQL itself refuses to update,
    delete or truncate audit events, signatures and definition versions, to disable or drop
    their triggers, to bypass them, or to drop or create tables."""
    with pg.reader() as s:
        assert s.execute(text("SELECT current_user")).scalar_one() == RUNTIME_ROLE
    with pytest.raises(ProgrammingError, match="permission denied|must be owner"):
        with pg.unit() as s:
            s.execute(text(statement))
    with pg.reader() as s:  # nothing changed: the events are all there and verify
        assert s.execute(text("SELECT count(*) FROM audit_events")).scalar_one() > 0
        assert integrity.verify(s, pg.signing_key).ok


def test_the_runtime_role_still_does_its_work(pg, people):
    """R-SEC-42: the runtime role inserts audit events and signatures and changes records
    (a signed CAPA step) - the grants take away only what the application never needs."""
    from tests.factories import sign

    r = pg.start("capa", people["emp"], {"title": "Roles", "description": "d"})
    pg.fire(r.number, "cancel", people["qa"], reason="Duplicate", signature=sign(people["qa"]))
    with pg.reader() as s:
        assert integrity.verify(s, pg.signing_key).ok


def test_check_roles_passes_the_runtime_role_and_fails_the_owner(pg):
    """R-SEC-43 R-A11-12-1: the report names each append-only table with its privileges;
    the runtime role is OK, the schema owner (it could drop the triggers) is not."""
    with pg.reader() as s:
        runtime = roles.check(s.connection(), RUNTIME_ROLE)
        owner = roles.check(s.connection(), OWNER_ROLE)
    assert runtime.ok, runtime.problems
    assert runtime.privileges["audit_events"] == {"SELECT", "INSERT"}
    assert {"UPDATE", "DELETE"} <= runtime.privileges["records"]
    assert "TRUNCATE" not in runtime.privileges["records"]
    assert runtime.privileges["alembic_version"] == {"SELECT"}
    assert "append-only audit_events" in "\n".join(runtime.lines())
    assert not owner.ok
    assert f"{OWNER_ROLE} owns audit_events: it can disable or drop its append-only trigger" \
        in owner.problems
    assert f"{OWNER_ROLE} may UPDATE, DELETE, TRUNCATE on the append-only table signatures" \
        in owner.problems
    assert any("owns the schema" in p for p in owner.problems)
    with pg.reader() as s:
        missing = roles.check(s.connection(), "no_such_role_x")
    assert missing.problems == ["role no_such_role_x does not exist"]


def test_verify_audit_names_an_application_running_as_a_superuser(pg):
    """R-SEC-43 R-P11-10e-3: verify-audit checks the role it runs as: the runtime role
    passes, a superuser connection (as if the application ran as one) is named as a
    protection problem."""
    with pg.reader() as s:
        assert list(integrity.runtime_role(s.connection(), pg.signing_key)) == []
    with dba(pg) as s:
        found = [str(p) for p in integrity.verify(s, pg.signing_key).problems]
    assert any(p.startswith("role ") and "is a superuser" in p for p in found), found


def test_grants_are_idempotent_and_refuse_the_owner_and_unknown_roles(pg):
    """R-SEC-42: granting twice gives the same privileges; granting the runtime privileges
    to the role that owns the tables, or to a role that does not exist, is refused with a
    message saying what to do."""
    with dba(pg) as s:
        conn = s.connection()
        before = roles.check(conn, RUNTIME_ROLE).privileges
        roles.grant_runtime(conn, RUNTIME_ROLE)
        roles.grant_runtime(conn, RUNTIME_ROLE)
        assert roles.check(conn, RUNTIME_ROLE).privileges == before
    with pytest.raises(roles.RoleError, match="owns the tables"), dba(pg) as s:
        roles.grant_runtime(s.connection(), OWNER_ROLE)
    with pytest.raises(roles.RoleError, match="does not exist: create it first"), \
            dba(pg) as s:
        roles.grant_runtime(s.connection(), "no_such_role_x")


@pytest.fixture
def fresh_pg(database_url: str) -> Iterator[Qms]:
    """`qms` on a new, empty PostgreSQL database: QMS_DATABASE_URL connects as the runtime
    role, QMS_MIGRATION_DATABASE_URL as the schema owner."""
    if not database_url.startswith("postgresql"):
        pytest.skip("database roles are PostgreSQL's")
    name = f"qms_roles_{uuid.uuid4().hex[:10]}"
    q = Qms(new_pg_database(database_url, name))
    yield q
    q.close()
    drop_pg_database(database_url, name)


def test_init_grants_the_runtime_role_and_check_roles_reports_it(fresh_pg):
    """R-SEC-42 R-SEC-43 R-A11-12-1: `qms init` migrates as the owner and grants the runtime
    role; `qms db check-roles` then reports it OK (exit 0) and the owner NOT OK (exit 1);
    `qms verify-audit` (as the runtime role) passes; the runtime role cannot migrate."""
    result = fresh_pg("init")
    assert result.exit_code == 0, result.output
    assert f"runtime role {RUNTIME_ROLE}: SELECT and INSERT only on the append-only " \
        "tables" in result.output
    ok = fresh_pg("db", "check-roles")
    assert ok.exit_code == 0, ok.output
    assert f"OK: {RUNTIME_ROLE} cannot change, delete or truncate" in ok.stdout
    assert re.search(r"append-only audit_events +SELECT INSERT +OK", ok.stdout), ok.stdout
    bad = fresh_pg("db", "check-roles", "--role", OWNER_ROLE)
    assert bad.exit_code == 1
    assert f"NOT OK: {OWNER_ROLE} owns audit_events" in bad.output
    assert fresh_pg("verify-audit").exit_code == 0
    again = fresh_pg("db", "grant-runtime", RUNTIME_ROLE)  # idempotent, by hand
    assert again.exit_code == 0, again.output
    assert "REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, signatures, " \
        "definition_versions" in again.stdout
    runtime = db.make_engine(fresh_pg.url)  # a real login as the runtime role
    try:
        for statement in ("DROP TABLE alembic_version", f"SET ROLE {OWNER_ROLE}",
                          "UPDATE audit_events SET hash = 'forged'"):
            with pytest.raises(DBAPIError, match="permission denied|must be owner"), \
                    runtime.begin() as c:
                c.execute(text(statement))
    finally:
        runtime.dispose()
    assert owner_url(fresh_pg.url) != fresh_pg.url


def test_role_commands_on_sqlite_say_there_are_no_roles(tmp_path):
    """R-SEC-43: on SQLite `qms db check-roles` says the triggers are the protection (exit 0)
    and `qms db grant-runtime` is refused with a clear message (exit 1)."""
    q = Qms(f"sqlite:///{tmp_path / 'qms.db'}")
    try:
        assert q("init").exit_code == 0
        check = q("db", "check-roles")
        assert check.exit_code == 0 and "SQLite has no database roles" in check.stdout
        grant = q("db", "grant-runtime", "qms_runtime")
        assert grant.exit_code == 1 and "database roles are PostgreSQL's" in grant.output
    finally:
        q.close()
