"""Migration of running records from a definition version to a later one (issue 9 item 4):
R-WF-10. The plan is validated, previewed by a dry run, signed, and every moved record
carries the before and after definition hashes in its audit trail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import func, select

from tests.conftest import TEST_KEY
from tests.factories import sign
from tests.integration.test_capa import open_capa, to_plan_approval
from tests.integration.test_cli import Qms, empty_url, qms  # noqa: F401 (fixtures)
from workflow import clock
from workflow.audit.integrity import verify
from workflow.change_control import migrate
from workflow.change_control.plans import (
    MEANING,
    PlanInvalid,
    dry_run,
    execute,
    parse_plan,
    signer_roles,
    validate,
)
from workflow.cli import main
from workflow.db import engines as db
from workflow.db.models import AuditEvent, Record, Signature, Task, TaskStatus
from workflow.engine.core import Engine
from workflow.errors import CredentialsRejected, NotAuthorized, SignatureRequired
from workflow.identity import enablement, passwords, totp
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.registry import Registry
from workflow.signatures import part11
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR, load_text

V1 = (DEFAULT_DEFINITIONS_DIR / "capa.yaml").read_text()
# v2: a label, a due date and a new optional field change
V2 = (V1.replace("label: QA closure", "label: Final QA closure", 1)
      .replace("  qa_closure:\n    label: Final QA closure\n    owner: qa\n    due_in: 7d",
               "  qa_closure:\n    label: Final QA closure\n    owner: qa\n    due_in: 10d")
      .replace("  title: {type: string, label: Title, max_length: 200}",
               "  title: {type: string, label: Title, max_length: 200}\n"
               "  risk_class: {type: choice, label: Risk class, choices: [low, high]}"))
# v2 without the field 'source' (every CAPA holds source: other, its default)
V2_NO_SOURCE = (V1.replace("  source: {type: choice", "  x_source: {type: choice", 1)
                .replace("edits: [title, description, source, source_deviation, owner]",
                         "edits: [title, description, x_source, source_deviation, owner]"))
RUNNING = ["open", "investigation", "action_plan", "plan_approval", "implementation",
           "verification", "effectiveness_check", "qa_closure"]
IDENTITY = {s: s for s in RUNNING}
PW = "Correct-Horse-Battery-9"


def publish(engine: Engine, text: str) -> str:
    keys = [p.stem for p in DEFAULT_DEFINITIONS_DIR.glob("*.yaml")]
    d = load_text(text, origin="capa v2", known_workflows={k: None for k in keys + ["capa"]})
    with engine.unit() as s:
        engine.registry.publish(s, d, identity.system_user(s), reason="test")
    return d.content_hash


def plan(**kw):
    return parse_plan({"id": "MIG-CAPA-1", "workflow": "capa", "from_version": 1,
                       "to_version": 2, "mapping": dict(IDENTITY), **kw})


def hash_of(engine, number):
    return engine.get(number).definition_hash


def table_counts(engine):
    with engine.reader() as s:
        return [s.execute(select(func.count()).select_from(m)).scalar_one()
                for m in (AuditEvent, Signature, Task, Record)]


@pytest.fixture
def capas(engine, people):
    """Four running CAPAs on version 1: open, investigation, action_plan, plan_approval."""
    a = open_capa(engine, people).number
    b = open_capa(engine, people).number
    engine.fire(b, "assign", people["qa"], {"owner": people["owner"]})
    c = open_capa(engine, people).number
    engine.fire(c, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(c, "submit_root_cause", people["owner"],
                {"root_cause_category": "method", "root_cause": "Not verified."})
    d = open_capa(engine, people).number
    to_plan_approval(engine, people, d)
    return {"open": a, "investigation": b, "action_plan": c, "plan_approval": d}


def test_good_mapping_migrates_running_records_only(engine, people, capas):
    """R-WF-10 R-P11-10e-1: records move to v2 in place (tasks, definition hash, audit event
    with both hashes, a signature each), other workflows and v2 records are untouched, the
    records keep working under v2 and verify-audit passes."""
    v1 = hash_of(engine, capas["open"])
    v2 = publish(engine, V2)
    newer = open_capa(engine, people).number  # started on v2
    assert hash_of(engine, newer) == v2
    before = {n: engine.get(n) for n in capas.values()}

    out = execute(engine, plan(), people["qa"], sign(people["qa"]), "Label fix (CC-12)")
    assert sorted(out.migrated) == sorted(capas.values()) and out.skipped == []

    with engine.reader() as s:
        for state, number in capas.items():
            rec = s.execute(select(Record).where(Record.number == number)).scalar_one()
            old = before[number]
            assert (rec.state, rec.definition_hash) == (state, v2)
            assert rec.version == old.version + 1 and rec.state_visit == old.state_visit + 1
            tasks = s.execute(select(Task).where(Task.record_id == rec.id)
                              .order_by(Task.id)).scalars().all()
            open_now = [t for t in tasks if t.status == TaskStatus.OPEN]
            assert [(t.state, t.state_visit) for t in open_now] == [(state, rec.state_visit)]
            cancelled = [t for t in tasks if t.status == TaskStatus.CANCELLED]
            assert [t.closed_by_transition for t in cancelled] == ["migrate"]
            # an unchanged state keeps its task's assignee and due date
            assert (open_now[0].assignee_id, open_now[0].due_at) == \
                (cancelled[0].assignee_id, cancelled[0].due_at)
            ev = s.execute(select(AuditEvent).where(AuditEvent.record_id == rec.id,
                                                    AuditEvent.action == "migrated")).scalar_one()
            assert ev.changes["definition_hash"] == [v1, v2]
            assert ev.changes["definition_version"] == [1, 2]
            assert ev.changes["plan"]["id"] == "MIG-CAPA-1"
            assert ev.reason == "Label fix (CC-12)" and ev.definition_hash == v2
            assert (ev.from_state, ev.to_state) == (state, state)
            sig = s.get(Signature, ev.changes["signature_id"])
            assert (sig.meaning, sig.signer_name, sig.record_id) == (MEANING, "Quinn QA", rec.id)
        assert verify(s, TEST_KEY).ok
        assert s.execute(select(Record.definition_hash).where(Record.number == newer)
                         ).scalar_one() == v2
        summary = s.execute(select(AuditEvent).where(AuditEvent.action == "records_migrated")
                            ).scalar_one()
        assert sorted(summary.changes["migrated"]) == sorted(capas.values())
        # nothing else moved: the v2 record and other workflows have no migrated event
        migrated = s.execute(select(Record.number).join(
            AuditEvent, AuditEvent.record_id == Record.id).where(
            AuditEvent.action == "migrated")).scalars().all()
        assert sorted(migrated) == sorted(capas.values())
        assert s.execute(select(Record.version).where(Record.number == newer)).scalar_one() == 1
    # the records run under v2 now: steps work, the plan approval signature included
    engine.fire(capas["investigation"], "submit_root_cause", people["owner"],
                {"root_cause_category": "method", "root_cause": "Found."})
    r = engine.fire(capas["plan_approval"], "approve_plan", people["qa"],
                    signature=sign(people["qa"]))
    assert r.state == "implementation"
    # a plan is safe to re-run: nothing is left on v1
    assert dry_run(engine, plan()).moves == []
    with engine.reader() as s:
        assert verify(s, TEST_KEY).ok


def test_other_versions_and_filtered_out_records_are_untouched(engine, people, capas):
    """R-WF-10: the filter selects records; the others stay on v1 with their tasks."""
    v1 = hash_of(engine, capas["open"])
    publish(engine, V2)
    out = execute(engine, plan(filter={"states": ["investigation"]}), people["qa"],
                  sign(people["qa"]), "pilot")
    assert out.migrated == [capas["investigation"]]
    for state in ("open", "action_plan", "plan_approval"):
        assert hash_of(engine, capas[state]) == v1
    out = execute(engine, plan(filter={"numbers": [capas["open"].lower()]}), people["qa"],
                  sign(people["qa"]), "pilot 2")
    assert out.migrated == [capas["open"]]
    assert hash_of(engine, capas["action_plan"]) == v1


def test_dry_run_shows_moves_and_tasks_and_changes_nothing(engine, people, capas):
    """R-WF-10: the preview names records, state moves, tasks closing and opening."""
    publish(engine, V2)
    before = table_counts(engine)
    pv = dry_run(engine, plan(mapping={**IDENTITY, "open": "investigation"}))
    assert table_counts(engine) == before
    # open -> investigation is a forward move over 'assign', which requires an owner
    assert any("requires owner" in p for p in pv.problems), pv.problems
    pv = dry_run(engine, plan())
    assert pv.ok and table_counts(engine) == before
    by = {m.number: m for m in pv.moves}
    m = by[capas["investigation"]]
    assert (m.from_state, m.to_state) == ("investigation", "investigation")
    assert m.tasks_closing == ["investigation for capa_owner (assigned to olga)"]
    assert m.tasks_opening == ["investigation for capa_owner (assigned to olga)"]
    text = "\n".join(pv.lines())
    assert f"{capas['plan_approval']}  plan_approval -> plan_approval" in text


def test_forward_move_allowed_when_the_skipped_step_could_have_been_taken(engine, people):
    """R-WF-10: open -> investigation is fine for a CAPA that already names its owner."""
    number = open_capa(engine, people, owner=people["owner"]).number
    publish(engine, V2)
    out = execute(engine, plan(mapping={**IDENTITY, "open": "investigation"}), people["qa"],
                  sign(people["qa"]), "owners named at start go straight to investigation")
    assert out.migrated == [number]
    rec = engine.get(number)
    assert rec.state == "investigation"
    with engine.reader() as s:
        [task] = s.execute(select(Task).where(Task.record_id == rec.id,
                                              Task.status == TaskStatus.OPEN)).scalars().all()
        assert (task.state, task.role) == ("investigation", "capa_owner")
        assert task.assignee_id == identity.get_user(s, people["owner"]).id
        assert task.due_at == clock.now() + timedelta(days=30)
        assert verify(s, TEST_KEY).ok


REFUSED = {
    "unmapped state": (dict(mapping={k: v for k, v in IDENTITY.items() if k != "investigation"}),
                       "are in 'investigation', which the mapping leaves unmapped"),
    "unknown target": (dict(mapping={**IDENTITY, "investigation": "triage"}),
                       "version 2 has no state 'triage'"),
    "upstream without permission": (dict(mapping={**IDENTITY, "action_plan": "open"}),
                                    "upstream move: 'open' is not reachable from 'action_plan'"),
    "upstream without a reason": (dict(mapping={**IDENTITY, "action_plan": "open"},
                                       allow_upstream=True),
                                  "allow_upstream: true needs an upstream_reason"),
    "final-state target": (dict(mapping={**IDENTITY, "open": "closed"}),
                           "'closed' is a final state of version 2"),
    "final-state source": (dict(mapping={**IDENTITY, "closed": "closed"}),
                           "closed records are never migrated"),
    "skips a signature": (dict(mapping={**IDENTITY, "plan_approval": "implementation"}),
                          "'approve_plan' needs a signature ('Approved')"),
    "skips required fields": (dict(mapping={**IDENTITY, "investigation": "action_plan"}),
                              "'submit_root_cause' requires root_cause_category, root_cause"),
    "drops a declared field": (dict(drop_fields=["title"]), "'title' is a field of version 2"),
    "unknown record": (dict(filter={"numbers": ["CAPA-2026-0099"]}), "CAPA-2026-0099"),
}


@pytest.mark.parametrize("kw, message", REFUSED.values(), ids=list(REFUSED))
def test_bad_plans_are_refused_and_change_nothing(engine, people, capas, kw, message):
    """R-WF-10: each rule refuses with a message naming the problem; nothing moves."""
    publish(engine, V2)
    before = table_counts(engine)
    problems = validate(engine, plan(**kw))
    assert any(message in p for p in problems), problems
    with pytest.raises(PlanInvalid, match="the migration plan is refused"):
        execute(engine, plan(**kw), people["qa"], sign(people["qa"]), "try")
    assert table_counts(engine) == before


def test_upstream_move_with_permission_and_reason(engine, people, capas):
    """R-WF-10: an explicit allow_upstream with a reason permits an earlier state."""
    publish(engine, V2)
    p = plan(mapping={**IDENTITY, "action_plan": "investigation"}, allow_upstream=True,
             upstream_reason="root cause to be redone under the new method",
             filter={"states": ["action_plan"]})
    out = execute(engine, p, people["qa"], sign(people["qa"]), "CC-13")
    assert out.migrated == [capas["action_plan"]]
    assert engine.get(capas["action_plan"]).state == "investigation"
    with engine.reader() as s:
        assert verify(s, TEST_KEY).ok


def test_undeclared_data_needs_drop_fields_and_the_values_stay_in_the_trail(engine, people,
                                                                            capas):
    """R-WF-10 R-P11-10e-1: data in a field v2 no longer declares is refused unless listed
    under drop_fields; dropped values are in the migrated event as old values."""
    publish(engine, V2_NO_SOURCE)
    problems = validate(engine, plan())
    assert any("field 'source' holds data in" in p and "drop_fields" in p for p in problems)
    out = execute(engine, plan(drop_fields=["source"]), people["qa"], sign(people["qa"]),
                  "source replaced")
    assert len(out.migrated) == 4
    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == capas["open"])).scalar_one()
        assert "source" not in rec.data
        ev = s.execute(select(AuditEvent).where(AuditEvent.record_id == rec.id,
                                                AuditEvent.action == "migrated")).scalar_one()
        assert ev.changes["fields"] == {"source": ["other", None]}
        assert verify(s, TEST_KEY).ok


POLICY = Policy(totp_required_roles=())


@pytest.fixture
def p11(engine, people):
    """The real Part 11 verifier; quinn (qa) and olga (capa_owner) have passwords."""
    engine.verifier = part11.Part11Verifier(TEST_KEY, POLICY)
    with engine.unit() as s:
        for name in (people["qa"], people["owner"]):
            u = identity.get_user(s, name)
            passwords.set_password(s, u, PW, actor=identity.system_user(s), policy=POLICY,
                              reason="test")
            u.must_change_password = False
    return engine


def test_signature_is_required_with_the_right_password_and_role(p11, people, capas):
    """R-WF-10 R-P11-200-1 R-P11-10g-1: no signature, a wrong password or a signer without
    QA / the process owner role migrate nothing; the signer's own password does."""
    publish(p11, V2)
    before = table_counts(p11)
    with pytest.raises(SignatureRequired):
        execute(p11, plan(), people["qa"], None, "fix")
    with pytest.raises(CredentialsRejected, match="password is wrong"):
        execute(p11, plan(), people["qa"],
                part11.PasswordSignature(people["qa"], "wrong-password"), "fix")
    with pytest.raises(NotAuthorized, match="Migration approved"):
        execute(p11, plan(), people["owner"],
                part11.PasswordSignature(people["owner"], PW), "fix")
    with pytest.raises(CredentialsRejected, match="not yours"):
        execute(p11, plan(), people["qa"], part11.PasswordSignature(people["owner"], PW), "fix")
    after = table_counts(p11)
    assert after[1:] == before[1:]  # no signature, task or record changed
    with p11.reader() as s:
        failed = s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "signature_failed")).scalar_one()
        assert failed == 2  # wrong password, wrong username: security events
    out = execute(p11, plan(), people["qa"], part11.PasswordSignature(people["qa"], PW), "fix")
    assert len(out.migrated) == 4
    with p11.reader() as s:
        methods = s.execute(select(Signature.method).where(
            Signature.meaning == MEANING)).scalars().all()
        assert methods == ["password"] * 4
        assert verify(s, TEST_KEY).ok


def run(q: Qms, *args: str, input: str) -> Any:
    """``q(*args)`` with text on stdin (Qms.__call__ takes none)."""
    real = db.make_engine

    def tracking(*a: Any, **kw: Any) -> Any:
        q.engines.append(real(*a, **kw))
        return q.engines[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(db, "make_engine", tracking)
        return q.runner.invoke(main, list(args), input=input)


@pytest.mark.committed
def test_cli_dry_run_and_signed_migration(qms, tmp_path):  # noqa: F811
    """R-WF-10: `qms definitions migrate PLAN --dry-run` previews; `--as USER
    --password-stdin --totp CODE` signs and migrates; verify-audit stays OK."""
    assert qms("init").exit_code == 0
    dbe = db.make_engine(qms.url)
    try:
        eng = Engine(db.make_sessionmaker(dbe), bytes.fromhex("44" * 32), registry=Registry())
        with eng.unit() as s:
            system = identity.system_user(s)
            for name, roles in (("emma", ["employee"]), ("quinn", ["qa", "employee"])):
                u = identity.create_user(s, name, name.title() + " Tester", actor=system,
                                         reason="test")
                for r in roles:
                    identity.grant_role(s, u, r, actor=system, reason="test")
                passwords.set_password(s, u, PW, actor=system, policy=Policy(), reason="test")
                u.must_change_password = False
                enablement.enable_for_system(s, u, reason="test")
        code = pyotp.TOTP(totp.begin_totp_enrolment(eng, "quinn").secret)
        totp.confirm_totp_enrolment(eng, "quinn", code.at(clock.now()))
        number = eng.start("capa", "emma", {"title": "T", "description": "D"}).number
        publish(eng, V2)
    finally:
        dbe.dispose()
    f = tmp_path / "plan.yaml"
    f.write_text("id: MIG-CLI-1\nworkflow: capa\nfrom_version: 1\nto_version: 2\n"
                 "mapping: {open: open}\n")
    r = qms("definitions", "migrate", str(f), "--dry-run")
    assert r.exit_code == 0, r.output
    assert f"{number}  open -> open" in r.stdout and "1 running record(s)" in r.stdout
    clock.set(clock.now() + timedelta(seconds=60))  # a fresh TOTP step
    args = ["definitions", "migrate", str(f), "--as", "quinn", "--password-stdin",
            "--reason", "label fix"]
    r = run(qms, *args, "--totp", "000000", input=PW + "\n")
    assert r.exit_code == 1 and "error:" in r.stderr and "Nothing was signed" in r.stderr
    r = run(qms, *args, "--totp", code.at(clock.now()), input=PW + "\n")
    assert r.exit_code == 0, r.output
    assert f"{number}: migrated to capa v2" in r.stdout
    assert "1 migrated, 0 skipped" in r.stdout
    assert qms("verify-audit").exit_code == 0


def test_timers_are_rearmed_and_a_record_changed_meanwhile_is_skipped(engine, people,
                                                                       make_user):
    """R-WF-10 R-WF-5: a state's timer is cancelled and re-armed for the new state visit at
    the same time; a record that changed after validation is skipped, never half-moved."""
    from workflow.db.models import Timer, TimerStatus

    coord = make_user("cora", "training_coordinator", "employee")
    data = {"title": "SOP-1 training", "document": "SOP-1", "document_version": "3",
            "trainee": people["emp"], "due_date": "2026-03-20"}
    t1 = engine.start("training_assignment", coord, data).number
    t2 = engine.start("training_assignment", coord, data).number
    src = (DEFAULT_DEFINITIONS_DIR / "training_assignment.yaml").read_text()
    keys = [p.stem for p in DEFAULT_DEFINITIONS_DIR.glob("*.yaml")]
    d = load_text(src.replace("title: Training Assignment", "title: Training assignment", 1),
                  known_workflows={k: None for k in keys})
    with engine.unit() as s:
        engine.registry.publish(s, d, identity.system_user(s), reason="test")
    p = parse_plan({"id": "MIG-TRN-1", "workflow": "training_assignment", "from_version": 1,
                    "to_version": 2, "mapping": {"assigned": "assigned"}})
    pv = dry_run(engine, p)
    assert pv.ok and [m.timers_armed for m in pv.moves] == [["mark_overdue"]] * 2
    with engine.reader() as s:
        new = engine.registry.by_hash(s, d.content_hash)
    moves = [{"record": m.record_id, "version": m.version + (m.number == t2),
              "state": "assigned"} for m in pv.moves]
    results = migrate.migrate_records(engine, moves, to=new, actor=people["qa"],
                                      signature=sign(people["qa"]), meaning=MEANING,
                                      roles=signer_roles(new.definition),
                                      plan=p.ref(), reason="title case")
    assert results[0] == (t1, None)
    assert results[1][0] == t2 and "changed while you were working on it" in results[1][1]
    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == t1)).scalar_one()
        timers = s.execute(select(Timer).where(Timer.record_id == rec.id)
                           .order_by(Timer.id)).scalars().all()
        assert [(t.status, t.state_visit) for t in timers] == [
            (TimerStatus.CANCELLED, 1), (TimerStatus.PENDING, 2)]
        assert timers[0].fire_at == timers[1].fire_at
        other = s.execute(select(Record).where(Record.number == t2)).scalar_one()
        assert other.definition_hash != d.content_hash and other.version == 1
        assert verify(s, TEST_KEY).ok
