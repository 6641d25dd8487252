"""Tampering behind the application's back, the way someone with SQL access to the database
could (issue 13): each scenario changes the data with plain SQL, then ``verify-audit`` must
name it, and where the engine would act on the changed row, the engine must refuse.

Scenarios: a definition's source rewritten with its hash untouched; the system chain's tail
cut and its head rewound; a whole record deleted with everything that hangs on it; a role
grant inserted or edited; a user's password hash or lockout edited; an API token's expiry or
scopes edited; the append-only protection removed (SQLite: DROP TRIGGER; PostgreSQL:
the trigger demoted from ALWAYS and ``session_replication_role = replica``) and then a row
changed. Runs on SQLite and PostgreSQL (the ``engine`` fixture's transaction rolls every
change back). On PostgreSQL the tests' engine acts as the runtime role, which may not touch
the append-only tables or their triggers at all (tests/integration/test_roles.py): what needs
the database administrator's rights goes through ``dba_sql`` / :func:`tests.factories.dba`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.factories import dba, sign
from workflow import clock
from workflow.audit import integrity
from workflow.audit import trail as audit
from workflow.db import engines as db
from workflow.db.models import Record
from workflow.engine.core import Engine
from workflow.errors import (
    AccountLocked,
    DefinitionTampered,
    LoginFailed,
    TamperedData,
    TokenRejected,
    UntrustedGrant,
)
from workflow.identity import admin, sessions
from workflow.identity import tokens as api_tokens
from workflow.identity import users as identity
from workflow.identity.passwords import hash_password
from workflow.identity.policy import Policy
from workflow.registry import Registry

PASSWORD = "Correct-Horse-2026!"


def dialect(engine: Engine) -> str:
    with engine.reader() as s:
        return s.get_bind().dialect.name


def sql(engine: Engine, statement: str, **params: Any) -> list[Any]:
    """Plain SQL behind the application's back, in a transaction of its own, with the
    application's own database rights (on PostgreSQL the runtime role: someone holding the
    application's credentials)."""
    with engine.unit() as s:
        result = s.execute(text(statement), params)
        return result.all() if result.returns_rows else []


def dba_sql(engine: Engine, statement: str, **params: Any) -> list[Any]:
    """:func:`sql` with the database administrator's rights (PostgreSQL: the superuser;
    the runtime role may not change the append-only tables or their triggers at all)."""
    with dba(engine) as s:
        result = s.execute(text(statement), params)
        return result.all() if result.returns_rows else []


def unprotect(engine: Engine, table: str) -> None:
    """Remove the append-only protection of ``table`` as a database administrator could."""
    if dialect(engine) == "sqlite":
        dba_sql(engine, f"DROP TRIGGER {table}_no_update")
        dba_sql(engine, f"DROP TRIGGER {table}_no_delete")
    else:
        dba_sql(engine, f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")


def problems(engine: Engine, kind: str | None = None) -> list[str]:
    with engine.reader() as s:
        found = integrity.verify(s, engine.signing_key).problems
    return [str(p) for p in found if kind is None or p.kind == kind]


def clean(engine: Engine) -> None:
    found = problems(engine)
    assert not found, found


@pytest.fixture
def plan(engine: Engine, people: dict[str, str]) -> str:
    """A CAPA waiting for QA's signed approval of its plan (only QA may take that step)."""
    r = engine.start("capa", people["emp"], {"title": "Label mix-up", "description": "At QC."})
    engine.fire(r.number, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(r.number, "submit_root_cause", people["owner"],
                {"root_cause_category": "method", "root_cause": "No label check."})
    engine.fire(r.number, "submit_plan", people["owner"], {
        "actions": [{"description": "Add a label check", "responsible": people["owner"]}],
        "effectiveness_criteria": "No mix-ups in 3 months"})
    return r.number


def state_of(engine: Engine, number: str) -> tuple[str, int]:
    with engine.reader() as s:
        rec = s.query(Record).filter_by(number=number).one()
        return rec.state, rec.audit_seq


def test_an_untouched_database_verifies(engine, people, plan):
    """R-P11-10a-2: the baseline: every check passes on data written by the application
    (seals, replay of the system chain, numbering, triggers)."""
    clean(engine)


def test_first_system_events_of_an_empty_database_share_one_chain_head(committed_url):
    """R-P11-10e-4 R-A11-12-1: on an empty database, the first unit writing two system events
    (a user created and given a password, as `qms init --demo` does) used to fail with an
    IntegrityError on audit_chains 'system'; now both events chain under one sealed head."""
    dbe = db.make_engine(committed_url)
    try:
        e = Engine(db.make_sessionmaker(dbe), b"k" * 32, registry=Registry())
        with e.unit() as s:
            system = identity.system_user(s)
            u = identity.create_user(s, "emma", "Emma Employee", actor=system, reason="t")
            from workflow.identity.passwords import set_password
            set_password(s, u, PASSWORD, actor=system, policy=Policy.from_settings())
        with e.reader() as s:
            rows = s.execute(text("SELECT name, seq FROM audit_chains")).all()
            assert [tuple(r) for r in rows] == [("system", 2)]
            assert integrity.verify(s, e.signing_key).ok
    finally:
        dbe.dispose()


# ------------------------------------------------------------------ definitions


def test_rewritten_definition_is_refused_and_named(engine, people, plan):
    """R-P11-10a-2 R-P11-10e-4 R-A11-10-1: the published CAPA source rewritten in the database
    (the plan approval's signature gate removed) with its content hash untouched: a fresh
    process refuses to compile it, so the record cannot move, and verify-audit names the
    version."""
    unprotect(engine, "definition_versions")
    gate = "    signature: {meaning: Approved, roles: [qa]}\n"
    dba_sql(engine, "UPDATE definition_versions SET source = replace(source, :gate, '') "
                    "WHERE key = 'capa'", gate=gate)
    assert gate not in sql(engine, "SELECT source FROM definition_versions WHERE key = 'capa'")[0][0]
    before = state_of(engine, plan)
    fresh = Engine(engine.uow, engine.signing_key, registry=Registry())  # nothing cached
    with pytest.raises(DefinitionTampered) as exc:
        fresh.fire(plan, "approve_plan", people["qa2"])
    assert (exc.value.key, exc.value.version) == ("capa", 1)
    assert "capa version 1 was changed outside the application" in exc.value.message
    assert state_of(engine, plan) == before
    found = problems(engine, "definition")
    assert len(found) == 1 and found[0].startswith("definition capa v1: ")


# ------------------------------------------------------------------ the system chain


def test_cut_system_chain_tail_with_rewound_head_is_named(engine, people):
    """R-P11-10e-4 R-A11-12-1: the last system event (a role grant) deleted and the chain head
    rewound to the event before it: the chain itself is consistent again, but the head no
    longer matches its seal, and the grant has lost its event."""
    unprotect(engine, "audit_events")
    head = sql(engine, "SELECT seq FROM audit_chains WHERE name = 'system'")[0][0]
    prev = sql(engine, "SELECT hash FROM audit_events WHERE chain = 'system' AND seq = :s",
               s=head - 1)[0][0]
    dba_sql(engine, "DELETE FROM audit_events WHERE chain = 'system' AND seq = :s", s=head)
    sql(engine, "UPDATE audit_chains SET seq = :s, head = :h WHERE name = 'system'",
        s=head - 1, h=prev)
    found = problems(engine)
    assert not [p for p in found if p.startswith("system event")]  # the links still hold
    assert any(p.startswith("system: the chain head") and "seal" in p for p in found), found
    assert any("has no role_granted event" in p for p in problems(engine, "replay"))


# ------------------------------------------------------------------ records


def test_deleted_record_is_named_by_its_number(engine, people, plan):
    """R-P11-10c-1 R-P11-10e-4 R-P11-10a-2: a whole record deleted with its events,
    signatures, tasks and links (triggers removed first): the gap in the gap-free numbering
    is named."""
    b = engine.start("capa", people["emp"], {"title": "Second", "description": "d"})
    engine.fire(b.number, "cancel", people["qa"], reason="Duplicate", signature=sign(people["qa"]))
    c = engine.start("capa", people["emp"], {"title": "Third", "description": "d"})
    rid = b.record_id
    for table in ("audit_events", "signatures"):
        unprotect(engine, table)
    sql(engine, "DELETE FROM notifications WHERE outbox_id IN "
                "(SELECT id FROM outbox WHERE record_id = :r)", r=rid)
    for stmt in ("DELETE FROM outbox WHERE record_id = :r",
                 "DELETE FROM timers WHERE record_id = :r",
                 "DELETE FROM tasks WHERE record_id = :r",
                 "DELETE FROM record_links WHERE source_id = :r OR target_id = :r",
                 "DELETE FROM due_date_extensions WHERE record_id = :r",
                 "DELETE FROM signatures WHERE record_id = :r",
                 "DELETE FROM audit_events WHERE record_id = :r",
                 "DELETE FROM records WHERE id = :r"):
        dba_sql(engine, stmt, r=rid)
    found = problems(engine, "numbering")
    prefix, year, _ = b.number.split("-")
    assert found == [f"record numbers {prefix}-{year}: 1 number(s) handed out have no record: "
                     f"{b.number} (records deleted outside the application)"]
    assert state_of(engine, c.number)[0] == "open"  # the records around it are untouched


def test_events_of_a_deleted_record_row_are_named(engine, people, plan):
    """R-P11-10c-1 R-P11-10e-4: only the record row deleted (its trail left behind): the
    orphaned events are named as a deleted record."""
    rid = sql(engine, "SELECT id FROM records WHERE number = :n", n=plan)[0][0]
    sql(engine, "DELETE FROM tasks WHERE record_id = :r", r=rid)
    if dialect(engine) == "postgresql":
        # FKs off; triggers stay ALWAYS (a superuser's setting: the runtime role may not)
        dba_sql(engine, "SET session_replication_role = replica")
    else:
        sql(engine, "PRAGMA defer_foreign_keys = ON")  # checked at a COMMIT that never comes
    sql(engine, "DELETE FROM records WHERE id = :r", r=rid)
    found = problems(engine, "record")
    assert any(p.startswith(f"record:{rid}: ") and "has no record row" in p for p in found), found


# ------------------------------------------------------------------ role grants


def _forge_grant(engine: Engine, username: str, role: str, seal: str = "") -> None:
    uid = sql(engine, "SELECT id FROM users WHERE username = :u", u=username)[0][0]
    sql(engine, "INSERT INTO role_grants (user_id, role, granted_by_id, granted_at, reason, seal) "
                "VALUES (:u, :r, :u, :at, 'forged', :seal)",
        u=uid, r=role, at=clock.now() - timedelta(days=1), seal=seal)


@pytest.mark.parametrize("seal", ["", "copied"])
def test_inserted_role_grant_is_not_honoured_and_named(engine, people, plan, seal):
    """R-P11-10d-1 R-A11-12-1 R-P11-10a-2: a QA grant inserted with SQL for the CAPA owner
    (unsealed, or with another grant's seal copied): the engine refuses her the QA step,
    naming the untrusted grant; verify-audit names the row (seal) and its missing event."""
    copied = sql(engine, "SELECT seal FROM role_grants ORDER BY id")[0][0]
    _forge_grant(engine, people["owner"], "qa", copied if seal else "")
    before = state_of(engine, plan)
    with pytest.raises(UntrustedGrant) as exc:
        engine.fire(plan, "approve_plan", people["owner"], signature=sign(people["owner"]))
    assert "fails its integrity check" in exc.value.message and exc.value.required_roles == ("qa",)
    assert state_of(engine, plan) == before
    assert any("(qa to user" in p for p in problems(engine, "seal"))
    assert any("has no role_granted event" in p for p in problems(engine, "replay"))


def test_edited_role_grant_is_not_honoured_and_named(engine, people, plan):
    """R-P11-10d-1 R-A11-12-1 R-P11-10a-2: the owner's capa_owner grant edited into a QA grant:
    its seal breaks, the engine refuses the step, verify-audit names the grant."""
    uid = sql(engine, "SELECT id FROM users WHERE username = :u", u=people["owner"])[0][0]
    gid = sql(engine, "SELECT id FROM role_grants WHERE user_id = :u AND role = 'capa_owner'",
              u=uid)[0][0]
    sql(engine, "UPDATE role_grants SET role = 'qa' WHERE id = :g", g=gid)
    with pytest.raises(UntrustedGrant):
        engine.fire(plan, "approve_plan", people["owner"], signature=sign(people["owner"]))
    assert any(p.startswith(f"role_grants: role grant #{gid} (qa to user #{uid})")
               for p in problems(engine, "seal"))
    # QA with a genuine grant still takes the step
    engine.fire(plan, "approve_plan", people["qa2"], signature=sign(people["qa2"]))


def test_revoked_grant_restored_with_its_old_seal_is_named(engine, people):
    """R-A11-12-1 R-P11-10a-2: a revoked grant put back with its earlier values and seal
    (a row rolled back, the seal is genuine): the replay of the system chain names it."""
    uid = sql(engine, "SELECT id FROM users WHERE username = :u", u=people["qa2"])[0][0]
    old = sql(engine, "SELECT id, seal FROM role_grants WHERE user_id = :u AND role = 'qa'",
              u=uid)[0]
    admin.revoke_role(engine, people["qa2"], "qa", actor=identity.SYSTEM_USERNAME, reason="left")
    sql(engine, "UPDATE role_grants SET revoked_at = NULL, revoked_by_id = NULL, "
                "revoke_reason = NULL, seal = :s WHERE id = :g", s=old.seal, g=old.id)
    assert not problems(engine, "seal")
    assert any("has no revoked grant" in p for p in problems(engine, "replay"))


# ------------------------------------------------------------------ users


@pytest.fixture
def ivy(engine: Engine) -> str:
    admin.create_user(engine, "ivy", "Ivy Inspector", actor=identity.SYSTEM_USERNAME,
                      reason="t", policy=Policy.from_settings(), roles=("employee",),
                      password=PASSWORD)
    return "ivy"


def test_replaced_password_hash_is_refused_at_login_and_named(engine, ivy):
    """R-P11-10d-1 R-P11-300b-1 R-P11-10a-2: the password hash replaced with SQL by the hash
    of a password the attacker knows: login with it is refused (the account fails its
    integrity check), verify-audit names the user row."""
    sql(engine, "UPDATE users SET password_hash = :h WHERE username = 'ivy'",
        h=hash_password("Attacker-Knows-2026!"))
    with pytest.raises(TamperedData, match="user account ivy fails its integrity check"):
        sessions.check_login_password(engine, "ivy", "Attacker-Knows-2026!")
    assert any(p.startswith("users: user ivy") for p in problems(engine, "seal"))
    # the refusal itself is a security event on the system chain
    last = sql(engine, "SELECT action, changes FROM audit_events WHERE chain = 'system' "
                       "ORDER BY seq DESC")[0]
    assert last[0] == "login_failed" and "integrity" in str(last[1])


def test_lockout_reset_by_sql_is_refused_and_named(engine, ivy):
    """R-P11-300d-1 R-P11-10a-2: an account locked by failed logins, unlocked with SQL:
    the next login is refused; with the pre-lock row and seal copied back instead (a genuine
    seal), the replay names the unlock without its account_unlocked event."""
    before = sql(engine, "SELECT failed_attempts, locked_at, locked_until, lockout_count, "
                         "seal FROM users WHERE username = 'ivy'")[0]
    policy = Policy.from_settings()
    for _ in range(policy.lockout_threshold):
        with pytest.raises((LoginFailed, AccountLocked)):
            sessions.check_login_password(engine, "ivy", "wrong password!!", policy)
    sql(engine, "UPDATE users SET locked_at = NULL, failed_attempts = 0 WHERE username = 'ivy'")
    with pytest.raises(TamperedData):
        sessions.check_login_password(engine, "ivy", PASSWORD, policy)
    assert any(p.startswith("users: user ivy") for p in problems(engine, "seal"))

    sql(engine, "UPDATE users SET failed_attempts = :f, locked_at = :l, locked_until = :u, "
                "lockout_count = :c, seal = :s WHERE username = 'ivy'",
        f=before.failed_attempts, l=before.locked_at, u=before.locked_until,
        c=before.lockout_count, s=before.seal)
    assert not problems(engine, "seal")
    assert any("is unlocked without an account_unlocked event" in p
               for p in problems(engine, "replay"))


# ------------------------------------------------------------------ API tokens


@pytest.mark.parametrize("change", [
    "expires_at = :far", "scopes = 'read write sign'"])
def test_edited_api_token_is_refused_and_named(engine, ivy, change):
    """R-P11-10d-1 R-P11-300c-1 R-P11-10a-2: a token's expiry pushed out or its scopes widened
    with SQL: the API refuses the token, verify-audit names the row and what differs from
    its creation event."""
    made = api_tokens.create_own_token(engine, "ivy", name="LIMS", scopes=("read",),
                                       expires_in_days=30)
    assert api_tokens.authenticate(engine, made.secret).username == "ivy"
    sql(engine, f"UPDATE api_tokens SET {change} WHERE id = :i",
        far=clock.now() + timedelta(days=3650), i=made.info.id)
    with pytest.raises(TokenRejected) as exc:
        api_tokens.authenticate(engine, made.secret)
    assert exc.value.reason == "tampered"
    assert any(p.startswith(f"api_tokens: API token {made.info.prefix}")
               for p in problems(engine, "seal"))
    what = "expiry" if "expires" in change else "scopes"
    assert any(what in p and "differ from its api_token_created event" in p
               for p in problems(engine, "replay"))


@pytest.mark.parametrize("seal", ["", "copied"])
def test_inserted_role_grant_is_not_honoured_for_an_api_token(engine, ivy, seal):
    """R-P11-10d-1 R-A11-12-1: the token's statement reads the caller's grants with the
    token (issue 18); a QA grant inserted with SQL for the token's owner (unsealed, or with
    another grant's seal copied) is not among the caller's roles, and is remembered as
    untrusted for the request, as a grant read on its own is."""
    made = api_tokens.create_own_token(engine, "ivy", name="LIMS", scopes=("read",))
    honest = api_tokens.authenticate(engine, made.secret).roles
    copied = sql(engine, "SELECT seal FROM role_grants ORDER BY id")[0][0]
    _forge_grant(engine, "ivy", "qa", copied if seal else "")
    with engine.reader() as s:
        caller = api_tokens.authenticate(engine, made.secret, session=s)
        assert "qa" not in caller.roles and caller.roles == honest
        assert identity.untrusted_roles(s, identity.get_user(s, "ivy")) == {"qa"}


# ------------------------------------------------------------------ the protections


def test_removed_protection_and_the_change_it_let_through_are_both_named(engine, people, plan):
    """R-P11-10e-3 R-P11-10c-1 R-P11-10a-2: SQLite: the signatures' triggers dropped;
    PostgreSQL: `SET session_replication_role = replica` alone no longer bypasses them (they
    fire ALWAYS), so the trigger is demoted first. Then a signature's meaning is changed:
    verify-audit names the signature AND the trigger that is missing or weakened."""
    done = engine.fire(plan, "approve_plan", people["qa2"], signature=sign(people["qa2"]))
    update = "UPDATE signatures SET meaning = 'Rejected' WHERE id = :i"
    if dialect(engine) == "sqlite":
        dba_sql(engine, "DROP TRIGGER signatures_no_update")
        weakened = ["trigger signatures_no_update: the append-only trigger is missing"]
    else:
        with pytest.raises(DBAPIError, match="append-only"):
            with dba(engine) as s:
                s.execute(text("SET LOCAL session_replication_role = replica"))
                s.execute(text(update), {"i": done.signature_id})
        dba_sql(engine, "ALTER TABLE signatures ENABLE TRIGGER signatures_append_only")
        weakened = ["trigger signatures_append_only: the append-only trigger does not fire "
                    "ALWAYS: a session with session_replication_role = replica bypasses it"]
    with dba(engine) as s:
        if dialect(engine) == "postgresql":
            s.execute(text("SET LOCAL session_replication_role = replica"))
        s.execute(text(update), {"i": done.signature_id})
    assert any(f"signature #{done.signature_id}" in p for p in problems(engine, "signature"))
    found = problems(engine, "protection")
    assert len(found) == len(weakened) and all(
        p.startswith(w) for p, w in zip(found, weakened, strict=True)), found


# ------------------------------------------------------------------ upgrading


def test_rows_written_before_seals_are_sealed_once_and_audited(engine, people):
    """R-P11-10a-2 R-A11-12-1: rows of a database upgraded to the seals carry none: no grant
    is honoured and verify-audit names them, until `seal_existing` (run by `qms db upgrade`,
    `qms init` and `qms db seal`) seals them and records that on the system chain."""
    for table in ("users", "role_grants", "api_tokens"):
        sql(engine, f"UPDATE {table} SET seal = ''")
    with engine.reader() as s:
        assert identity.roles_of(s, identity.get_user(s, people["qa"])) == set()
    assert any("carries no seal" in p for p in problems(engine, "seal"))
    done = integrity.seal_existing(engine, "test")
    assert set(done) == {"users", "role_grants"}
    assert integrity.seal_existing(engine, "test") == {}
    clean(engine)
    with engine.reader() as s:
        assert identity.roles_of(s, identity.get_user(s, people["qa"])) == {"qa", "employee"}
    last = sql(engine, "SELECT action FROM audit_events WHERE chain = :c ORDER BY seq DESC",
               c=audit.SYSTEM_CHAIN)[0][0]
    assert last == "rows_sealed"
