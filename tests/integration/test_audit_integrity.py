"""The audit trail and signatures resist and reveal tampering (R-P11-10e-3, R-P11-10c-1,
R-P11-10e-4, R-P11-10a-2, R-P11-70-1, R-P11-10k-1).

First the database itself refuses UPDATE and DELETE on the append-only tables. Then, with the
triggers removed the way an administrator could (SQLite: DROP TRIGGER; PostgreSQL: ALTER TABLE
... DISABLE TRIGGER), each kind of tampering is done with plain SQL behind the application's
back, and ``workflow.integrity.verify`` / ``qms verify-audit`` must name it.

Most tests run on the rolled-back ``engine`` fixture (the trigger changes roll back with the
test); the CLI tests use a committed database of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError

from tests.factories import acting_engine, dba, sign
from workflow import canonical
from workflow.audit import integrity
from workflow.audit import trail as audit
from workflow.cli import main
from workflow.db import engines as db
from workflow.db import roles
from workflow.db.models import AuditChain, AuditEvent, DefinitionVersion, Record, Signature
from workflow.engine.core import Engine
from workflow.identity import enablement
from workflow.identity import users as identity

APPEND_ONLY = roles.APPEND_ONLY  # the one catalogue


# ------------------------------------------------------------------ helpers


def dialect(engine: Engine) -> str:
    with engine.reader() as s:
        return s.get_bind().dialect.name


def sql(engine: Engine, statement: str, **params: Any) -> list[Any]:
    """Run plain SQL behind the application's back, in a transaction of its own, with the
    database administrator's rights (PostgreSQL: the runtime role the tests' engine acts as
    may not even try to change the append-only tables, tests/integration/test_roles.py;
    here the triggers must refuse the administrator too)."""
    with dba(engine) as s:
        result = s.execute(text(statement), params)
        return result.all() if result.returns_rows else []


def unprotect(engine: Engine, table: str) -> None:
    """Remove the append-only triggers of ``table`` as a database administrator could."""
    if dialect(engine) == "sqlite":
        sql(engine, f"DROP TRIGGER {table}_no_update")
        sql(engine, f"DROP TRIGGER {table}_no_delete")
    else:
        sql(engine, f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")


def report(engine: Engine) -> audit.VerifyReport:
    with engine.reader() as s:
        return integrity.verify(s, engine.signing_key)


def problems(engine: Engine) -> list[str]:
    return [str(p) for p in report(engine).problems]


@pytest.fixture
def trail(engine: Engine, people: dict[str, str]) -> dict[str, Any]:
    """Two CAPAs with signed steps: the first approved (plan) and the second cancelled."""
    a = engine.start("capa", people["emp"], {"title": "Label mix-up", "description": "At QC."})
    engine.fire(a.number, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(a.number, "submit_root_cause", people["owner"],
                {"root_cause_category": "method", "root_cause": "No label check."})
    engine.fire(a.number, "submit_plan", people["owner"], {
        "actions": [{"description": "Add a label check", "responsible": people["owner"]}],
        "effectiveness_criteria": "No mix-ups in 3 months"})
    signed = engine.fire(a.number, "approve_plan", people["qa"], signature=sign(people["qa"]))
    b = engine.start("capa", people["emp"], {"title": "Duplicate", "description": "Same."})
    cancelled = engine.fire(b.number, "cancel", people["qa"], reason="Duplicate",
                            signature=sign(people["qa"]))
    return {"a": a.record_id, "a_number": a.number, "a_sig": signed.signature_id,
            "b": b.record_id, "b_number": b.number, "b_sig": cancelled.signature_id}


def event_row(engine: Engine, record_id: int, seq: int) -> Any:
    rows = sql(engine, "SELECT id, reason, hash FROM audit_events WHERE chain = :c AND seq = :s",
               c=audit.record_chain(record_id), s=seq)
    return rows[0] if rows else None


# ------------------------------------------------------------------ the database refuses


def first_id(engine: Engine, table: str) -> int:
    return sql(engine, f"SELECT min(id) FROM {table}")[0][0]


def snapshot(engine: Engine, table: str, row_id: int) -> tuple:
    return tuple(sql(engine, f"SELECT * FROM {table} WHERE id = :i", i=row_id)[0])


UPDATES = {
    "audit_events": "UPDATE audit_events SET reason = 'rewritten' WHERE id = :i",
    "signatures": "UPDATE signatures SET meaning = 'Rejected' WHERE id = :i",
    "definition_versions": "UPDATE definition_versions SET title = 'Edited' WHERE id = :i",
}


@pytest.mark.parametrize("table", APPEND_ONLY)
@pytest.mark.parametrize("verb", ["UPDATE", "DELETE"])
def test_database_refuses_update_and_delete(engine, trail, table, verb):
    """R-P11-10e-3 R-P11-10c-1 R-P11-10k-1 R-P11-10c-2: UPDATE and DELETE on the audit trail,
    signatures and published definitions are refused by a trigger, and the row stays as it
    was: nothing can purge them (the product has no purge function either)."""
    row_id = first_id(engine, table)
    before = snapshot(engine, table, row_id)
    count = sql(engine, f"SELECT count(*) FROM {table}")[0][0]
    stmt = UPDATES[table] if verb == "UPDATE" else f"DELETE FROM {table} WHERE id = :i"
    with pytest.raises(DBAPIError, match=f"{table} is append-only: {verb} refused"):
        sql(engine, stmt, i=row_id)
    with pytest.raises(DBAPIError, match="append-only"):  # a whole-table statement too
        sql(engine, UPDATES[table].split(" WHERE")[0] if verb == "UPDATE"
            else f"DELETE FROM {table}")
    assert snapshot(engine, table, row_id) == before
    assert sql(engine, f"SELECT count(*) FROM {table}")[0][0] == count
    assert report(engine).ok


def test_postgresql_refuses_truncate(engine, trail):
    """R-P11-10e-3 R-P11-10c-1: TRUNCATE (PostgreSQL only; SQLite has none) is refused too."""
    if dialect(engine) != "postgresql":
        pytest.skip("TRUNCATE exists on PostgreSQL only")
    for table in APPEND_ONLY:
        with pytest.raises(DBAPIError, match=f"{table} is append-only: TRUNCATE refused"):
            sql(engine, f"TRUNCATE {table} CASCADE")
    assert report(engine).ok


# ------------------------------------------------------------------ tampering is revealed


def test_clean_database_verifies_with_counts(engine, trail):
    """R-P11-10a-2 R-P11-10e-4 R-P11-70-1: an untouched database verifies, counting every
    chain, event and signature."""
    r = report(engine)
    assert r.ok, [str(p) for p in r.problems]
    with engine.reader() as s:
        records = s.execute(select(func.count()).select_from(Record)).scalar_one()
        chains = s.execute(select(func.count()).select_from(AuditChain)).scalar_one()
        events = s.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
        sigs = s.execute(select(func.count()).select_from(Signature)).scalar_one()
    assert (records, sigs) == (2, 2)
    assert (r.chains, r.events, r.signatures) == (records + chains, events, sigs)


def test_altered_event_is_named_first(engine, trail):
    """R-P11-10e-4 R-P11-10a-2: one event's content altered in the database: the report names
    that event (chain, sequence number, row id) first."""
    unprotect(engine, "audit_events")
    target = event_row(engine, trail["a"], 3)
    sql(engine, "UPDATE audit_events SET reason = 'nothing happened' WHERE id = :i", i=target.id)
    r = report(engine)
    assert not r.ok
    first = r.problems[0]
    assert (first.chain, first.seq, first.event_id) == (f"record:{trail['a']}", 3, target.id)
    assert "altered" in first.message
    assert str(first).startswith(f"record:{trail['a']} event #3 (row id {target.id})")
    # b is still fine; the removed protection is named too (after the data it let change)
    assert all(p.chain == f"record:{trail['a']}" for p in r.problems if p.kind != "protection")
    assert any(p.kind == "protection" and "audit_events" in p.chain for p in r.problems)


def test_altered_event_with_recomputed_hash_is_reported(engine, trail):
    """R-P11-10e-4: re-hashing the altered event does not help: without the server key its
    hash cannot be made to verify, so the altered event itself is named."""
    unprotect(engine, "audit_events")
    with engine.reader() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.chain == audit.record_chain(trail["a"]),
                                                AuditEvent.seq == 2)).scalar_one()
        ev_id = ev.id
        new_hash = canonical.sha256({**audit.event_payload(ev), "reason": "nothing happened"})
    sql(engine, "UPDATE audit_events SET reason = 'nothing happened', hash = :h WHERE id = :i",
        h=new_hash, i=ev_id)
    first = report(engine).problems[0]
    assert (first.chain, first.seq) == (f"record:{trail['a']}", 2)
    assert "does not match its hash" in first.message


def test_deleted_event_is_reported(engine, trail):
    """R-P11-10e-4: an event deleted from the middle of a chain, or from its end."""
    unprotect(engine, "audit_events")
    sql(engine, "DELETE FROM audit_events WHERE id = :i", i=event_row(engine, trail["a"], 2).id)
    first = report(engine).problems[0]
    assert (first.chain, first.seq) == (f"record:{trail['a']}", 2)
    assert "missing" in first.message

    last = sql(engine, "SELECT audit_seq FROM records WHERE id = :i", i=trail["b"])[0][0]
    sql(engine, "DELETE FROM audit_events WHERE id = :i", i=event_row(engine, trail["b"], last).id)
    texts = problems(engine)
    assert any(t.startswith(f"record:{trail['b']}") and "removed" in t for t in texts), texts


def test_reordered_events_are_reported(engine, trail):
    """R-P11-10e-4: two events of a chain swapped (their sequence numbers exchanged)."""
    unprotect(engine, "audit_events")
    e2, e3 = event_row(engine, trail["a"], 2), event_row(engine, trail["a"], 3)
    sql(engine, "UPDATE audit_events SET seq = -1 WHERE id = :i", i=e2.id)
    sql(engine, "UPDATE audit_events SET seq = 2 WHERE id = :i", i=e3.id)
    sql(engine, "UPDATE audit_events SET seq = 3 WHERE id = :i", i=e2.id)
    first = report(engine).problems[0]
    assert (first.chain, first.seq) == (f"record:{trail['a']}", 2)


def _forged_update(engine: Engine, record_id: int, title: str) -> dict[str, Any]:
    """An 'update' event appended to the record's chain, hashed exactly as the engine does."""
    with engine.reader() as s:
        rec = s.get(Record, record_id)
        last = s.execute(select(AuditEvent).where(AuditEvent.chain == audit.record_chain(rec.id),
                                                  AuditEvent.seq == rec.audit_seq)).scalar_one()
        row = {"chain": last.chain, "seq": last.seq + 1, "at": last.at, "actor_id": last.actor_id,
               "actor_name": last.actor_name, "action": "update", "record_id": rec.id,
               "record_version": rec.version, "definition_hash": rec.definition_hash,
               "transition": None, "from_state": None, "to_state": None,
               "changes": {"title": [rec.data["title"], title]}, "reason": None,
               "prev_hash": last.hash}
    row["hash"] = canonical.sha256(row)
    with engine.unit() as s:
        s.execute(insert(AuditEvent.__table__).values(**row))
    return row


def test_inserted_forged_event_is_reported(engine, trail):
    """R-P11-10e-4: a forged event appended to a record's chain (no trigger needed to INSERT),
    correctly linked and hashed with plain SHA-256, is reported: its hash needs the key."""
    row = _forged_update(engine, trail["b"], "Forged title")
    first = report(engine).problems[0]
    assert (first.chain, first.seq) == (f"record:{trail['b']}", row["seq"])
    assert "does not match its hash" in first.message


def test_forged_event_on_a_chain_nobody_checks_is_reported(engine, trail):
    """R-P11-10e-4: a forged event that shows in a record's audit trail (by its record_id)
    but is filed under a chain name no record and no system chain owns."""
    with engine.reader() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.record_id == trail["b"])
                       .order_by(AuditEvent.seq)).scalars().first()
        row = {c.name: getattr(ev, c.key) for c in AuditEvent.__table__.columns if c.name != "id"}
    row.update(chain="record:999999", seq=1, reason="approved by phone", action="transition",
               transition="approve", from_state="open", to_state="closed", changes={})
    with engine.unit() as s:
        s.execute(insert(AuditEvent.__table__).values(**row))
    with engine.reader() as s:  # it is part of the record's trail as every reader sees it
        shown = s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.record_id == trail["b"], AuditEvent.reason == "approved by phone")
        ).scalar_one()
        assert shown == 1
    texts = problems(engine)
    assert any("record:999999" in t for t in texts), texts


def test_fully_rewritten_chain_tail_is_reported(engine, trail):
    """R-P11-10e-4: a forged event appended with the record row's head, data and title moved
    along to match (all with plain SQL) must still be detected."""
    row = _forged_update(engine, trail["b"], "Forged title")
    with engine.reader() as s:
        data = {**s.get(Record, trail["b"]).data, "title": "Forged title"}
    with engine.unit() as s:
        s.execute(Record.__table__.update().where(Record.id == trail["b"]).values(
            data=data, title="Forged title", audit_seq=row["seq"], audit_head=row["hash"]))
    assert not report(engine).ok


def test_record_data_edited_behind_the_apps_back(engine, trail):
    """R-P11-10e-4 R-P11-70-1: records.data changed with plain SQL: the record's data differs
    from what its audit trail replays to, and the field is named."""
    with engine.reader() as s:
        data = {**s.get(Record, trail["a"]).data, "root_cause": "Operator error"}
    with engine.unit() as s:
        s.execute(Record.__table__.update().where(Record.id == trail["a"]).values(data=data))
    texts = problems(engine)
    assert len(texts) == 2, texts  # the replay names the field; the row's seal breaks too
    assert f"{trail['a_number']}: record data differs from its audit trail" in texts[0]
    assert "root_cause" in texts[0]
    assert "does not match its seal" in texts[1]


def test_record_state_edited_behind_the_apps_back(engine, trail):
    """R-P11-10e-4 R-P11-10f-1: records.state moved with plain SQL is reported."""
    sql(engine, "UPDATE records SET state = 'closed' WHERE id = :i", i=trail["a"])
    texts = problems(engine)
    assert any("record is in state 'closed' but its audit trail ends in 'implementation'" in t
               for t in texts), texts


def _other_definition_hash(engine: Engine, record_id: int) -> str:
    with engine.reader() as s:
        rec = s.get(Record, record_id)
        return s.execute(select(DefinitionVersion.content_hash).where(
            DefinitionVersion.key != rec.workflow_key).limit(1)).scalar_one()


RECORD_COLUMNS = {
    # column: (why it matters, the SQL value to set it to)
    "title": ("shown in every list and inbox", lambda e, t: "'Nothing to see'"),
    "created_by_id": ("drives 'not the initiator' segregation of duties",
                      lambda e, t: "(SELECT max(id) FROM users)"),
    "due_current": ("drives overdue tasks and KPIs", lambda e, t: "NULL"),
    "definition_hash": ("pins the record to its definition version (R-P11-10k-1)",
                        lambda e, t: f"'{_other_definition_hash(e, t['a'])}'"),
}


@pytest.mark.parametrize("column", list(RECORD_COLUMNS))
def test_record_columns_edited_behind_the_apps_back(engine, trail, column):
    """R-P11-10e-4 R-P11-10g-2 R-P11-10k-1: a record column other than data and state changed
    with plain SQL is reported."""
    value = RECORD_COLUMNS[column][1](engine, trail)
    before = sql(engine, f"SELECT {column} FROM records WHERE id = :i", i=trail["a"])[0][0]
    sql(engine, f"UPDATE records SET {column} = {value} WHERE id = :i", i=trail["a"])
    assert sql(engine, f"SELECT {column} FROM records WHERE id = :i", i=trail["a"])[0][0] != before
    assert not report(engine).ok, RECORD_COLUMNS[column][0]


def test_signature_copied_to_another_record_fails(engine, trail):
    """R-P11-70-1: a signature row copied onto another record (INSERT with that record's id)
    no longer verifies: its MAC binds it to the record it was given on."""
    cols = [c.name for c in Signature.__table__.columns if c.name not in ("id", "record_id")]
    listed = ", ".join(cols)
    sql(engine, f"INSERT INTO signatures (record_id, {listed}) "
                f"SELECT :target, {listed} FROM signatures WHERE id = :sid",
        target=trail["b"], sid=trail["a_sig"])
    copy_id = sql(engine, "SELECT max(id) FROM signatures")[0][0]
    texts = problems(engine)
    assert any(t.startswith(f"record:{trail['b']}") and f"signature #{copy_id}" in t
               and "does not verify" in t for t in texts), texts
    assert not any(f"signature #{trail['a_sig']} " in t for t in texts), texts


def test_signature_meaning_changed_fails(engine, trail):
    """R-P11-70-1 R-P11-50-2: a signature's meaning changed in the database fails its MAC."""
    unprotect(engine, "signatures")
    sql(engine, "UPDATE signatures SET meaning = 'Reviewed' WHERE id = :i", i=trail["a_sig"])
    texts = problems(engine)
    assert any(f"signature #{trail['a_sig']} ('Reviewed'" in t and "does not verify" in t
               for t in texts), texts


def test_signature_deleted_is_reported(engine, trail):
    """R-P11-70-1 R-P11-10c-1: a signature removed from the database is named by the sign
    event that recorded it."""
    unprotect(engine, "signatures")
    sql(engine, "DELETE FROM signatures WHERE id = :i", i=trail["b_sig"])
    texts = problems(engine)
    assert any(f"signature #{trail['b_sig']} recorded here is missing" in t for t in texts), texts


def test_system_chain_tampering_is_reported(engine, trail):
    """R-P11-10e-4 R-A11-12-1: the system chain (users, role grants, definitions) is checked
    too: an altered role-grant event is named on that chain."""
    unprotect(engine, "audit_events")
    target = sql(engine, "SELECT id, seq FROM audit_events WHERE chain = 'system' AND "
                         "action = 'role_granted' ORDER BY seq")[0]
    sql(engine, "UPDATE audit_events SET reason = 'self-granted' WHERE id = :i", i=target.id)
    first = report(engine).problems[0]
    assert (first.chain, first.seq, first.event_id) == ("system", target.seq, target.id)


# ------------------------------------------------------------------ qms verify-audit


KEY_HEX = "22" * 32


@pytest.fixture
def verified_db(committed_url: str, database_url: str, shipped_definitions: dict[str, Any],
                monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Engine, CliRunner]]:
    """A committed database written by an engine with KEY_HEX (acting as the runtime role,
    able to take the administrator's rights: :func:`tests.factories.dba`), and a CLI runner
    set up to open the same database with the same key."""
    dbe = acting_engine(committed_url, database_url)
    engine = Engine(db.make_sessionmaker(dbe), bytes.fromhex(KEY_HEX))
    with engine.unit() as s:
        system = identity.system_user(s)
        for d in shipped_definitions.values():
            engine.registry.publish(s, d, system, reason="test")
        for name, roles in (("emma", ["employee"]), ("quinn", ["qa", "employee"])):
            u = identity.create_user(s, name, name.title(), email="", actor=system, reason="t")
            for r in roles:
                identity.grant_role(s, u, r, actor=system, reason="t")
            enablement.enable_for_system(s, u, reason="t")
    r = engine.start("capa", "emma", {"title": "CLI", "description": "d"})
    engine.fire(r.number, "cancel", "quinn", reason="test", signature=sign("quinn"))
    made: list[Any] = []
    real_make_engine = db.make_engine

    def tracking_make_engine(*args: Any, **kwargs: Any) -> Any:
        made.append(real_make_engine(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(db, "make_engine", tracking_make_engine)  # so the CLI's engines close
    yield engine, CliRunner(env={"QMS_DATABASE_URL": committed_url, "QMS_SIGNATURE_KEY": KEY_HEX})
    for e in made:
        e.dispose()
    dbe.dispose()


@pytest.mark.committed
def test_verify_audit_cli_ok_on_clean_database(verified_db):
    """R-P11-10a-2 R-P11-10e-4 R-P11-70-1: `qms verify-audit` on an untouched database exits 0
    with OK and the counts; with another server key the signatures no longer verify."""
    engine, runner = verified_db
    result = runner.invoke(main, ["verify-audit"])
    assert result.exit_code == 0, result.output
    r = report(engine)
    assert result.stdout == (f"OK: {r.chains} chains, {r.events} events, "
                             f"{r.signatures} signatures verified\n")
    assert r.signatures == 1

    other = runner.invoke(main, ["verify-audit"], env={"QMS_SIGNATURE_KEY": "33" * 32})
    assert other.exit_code == 1
    assert "does not verify" in other.stderr


@pytest.mark.committed
def test_verify_audit_cli_names_first_broken_event(verified_db):
    """R-P11-10a-2 R-P11-10e-4: after one event is altered, `qms verify-audit` exits 1 and
    names that event first."""
    engine, runner = verified_db
    unprotect(engine, "audit_events")
    rec_id = sql(engine, "SELECT id FROM records")[0][0]
    target = event_row(engine, rec_id, 2)
    sql(engine, "UPDATE audit_events SET reason = 'edited' WHERE id = :i", i=target.id)
    result = runner.invoke(main, ["verify-audit"])
    assert result.exit_code == 1, result.output
    no_tb = result.exception is None or isinstance(result.exception, SystemExit)
    assert no_tb and "Traceback" not in result.output
    lines = result.stderr.splitlines()
    # the altered event, then the removed trigger(s) that let it happen
    removed = (["audit_events_no_update", "audit_events_no_delete"]
               if dialect(engine) == "sqlite" else ["audit_events_append_only"])
    assert lines[0].startswith(f"FAILED: {1 + len(removed)} problem(s) in ")
    assert lines[1] == (f"first: record:{rec_id} event #2 (row id {target.id}): content does not "
                        "match its hash (the row was altered)")
    assert [line.split(": ")[1] for line in lines[2:]] == [
        f"[protection] trigger {name}" for name in removed]
