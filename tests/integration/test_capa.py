"""CAPA walked end to end, with its reject, not-effective and cancel paths."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.factories import give_training, sign
from workflow import clock
from workflow.db.models import AuditEvent, OutboxMessage, Record, Signature, Task, TaskStatus
from workflow.errors import (
    GuardFailed,
    ReasonRequired,
    SegregationOfDuties,
    SignatureRequired,
    TrainingRequired,
)


def open_capa(engine, people, **extra):
    data = {"title": "Label mix-up on line 3", "description": "Wrong labels found at QC.",
            **extra}
    return engine.start("capa", people["emp"], data)


def to_plan_approval(engine, people, number):
    engine.fire(number, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(number, "submit_root_cause", people["owner"],
                {"root_cause_category": "method", "root_cause": "Label roll swap not verified."})
    return engine.fire(number, "submit_plan", people["owner"], {
        "actions": [{"description": "Add second-person label check", "responsible": people["owner"],
                     "due": "2026-04-30"}],
        "effectiveness_criteria": "No label mix-ups in 3 months",
    })


def test_capa_happy_path_closes_with_signatures_and_full_trail(engine, people):
    """R-P11-10f-1 R-P11-10e-1 R-P11-50-1 R-TRN-13: every step in order, signatures with
    meaning; the closer needs current training on the CAPA procedure."""
    r = open_capa(engine, people)
    assert r.number == "CAPA-2026-0001"
    assert r.state == "open"
    to_plan_approval(engine, people, r.number)
    r = engine.fire(r.number, "approve_plan", people["qa"], signature=sign(people["qa"]))
    assert r.state == "implementation"
    with pytest.raises(GuardFailed, match="Every action must be marked done"):
        engine.fire(r.number, "complete_implementation", people["owner"],
                    {"implementation_summary": "Check added to SOP-12."})
    rec = engine.get(r.number)
    actions = [{**a, "done": True} for a in rec.data["actions"]]
    r = engine.fire(r.number, "complete_implementation", people["owner"],
                    {"implementation_summary": "Check added to SOP-12.", "actions": actions})
    assert r.state == "verification"
    assert engine.get(r.number).data["effectiveness_due"] == "2026-05-31"  # 90 days default
    r = engine.fire(r.number, "verify", people["qa"], {"verification_evidence": "SOP-12 v4"},
                    signature=sign(people["qa"]))
    assert r.state == "effectiveness_check"
    # the effectiveness check opens on its due date (not_before, R-WF-14)
    clock.set(clock.now() + timedelta(days=90))
    r = engine.fire(r.number, "record_effectiveness", people["qa"],
                    {"effectiveness_result": "effective",
                     "effectiveness_evidence": "0 mix-ups in 90 days"})
    # R-TRN-13: closing requires current training on the CAPA procedure, named when missing
    with pytest.raises(TrainingRequired, match="SOP-CAPA-001"):
        engine.fire(r.number, "close", people["qa2"], signature=sign(people["qa2"]))
    assert engine.get(r.number).state == "qa_closure"  # nothing moved
    give_training(engine, people["qa2"])
    r = engine.fire(r.number, "close", people["qa2"], signature=sign(people["qa2"]))
    assert r.state == "closed"

    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == r.number)).scalar_one()
        assert rec.outcome == "done" and rec.closed_at == clock.now()
        sigs = s.execute(select(Signature).where(Signature.record_id == rec.id)
                         .order_by(Signature.id)).scalars().all()
        assert [(x.meaning, x.signer_name) for x in sigs] == [
            ("Approved", "Quinn QA"), ("Verified", "Quinn QA"),
            ("Approved for closure", "Quentin QA")]
        assert not s.execute(select(Task).where(Task.record_id == rec.id,
                                                Task.status == TaskStatus.OPEN)).first()
        moves = s.execute(select(AuditEvent.from_state, AuditEvent.to_state)
                          .where(AuditEvent.record_id == rec.id,
                                 AuditEvent.action == "transition")
                          .order_by(AuditEvent.seq)).all()
        assert [m.to_state for m in moves] == [
            "investigation", "action_plan", "plan_approval", "implementation", "verification",
            "effectiveness_check", "qa_closure", "closed"]


def test_reject_plan_needs_reason_and_returns_to_action_plan(engine, people):
    """R-P11-10e-7 R-P11-10f-2: rejection carries a reason, visible in the trail."""
    r = open_capa(engine, people)
    to_plan_approval(engine, people, r.number)
    with pytest.raises(ReasonRequired):
        engine.fire(r.number, "reject_plan", people["qa"],
                    {"plan_rejection_reason": "Action too vague"})
    r = engine.fire(r.number, "reject_plan", people["qa"],
                    {"plan_rejection_reason": "Action too vague"}, reason="Not measurable")
    assert r.state == "action_plan"
    with engine.reader() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.transition == "reject_plan",
                                                AuditEvent.action == "transition")).scalar_one()
        assert ev.reason == "Not measurable"


def test_not_effective_returns_to_action_plan(engine, people):
    r = open_capa(engine, people)
    to_plan_approval(engine, people, r.number)
    engine.fire(r.number, "approve_plan", people["qa"], signature=sign(people["qa"]))
    acts = [{**a, "done": True} for a in engine.get(r.number).data["actions"]]
    engine.fire(r.number, "complete_implementation", people["owner"],
                {"implementation_summary": "done", "actions": acts})
    engine.fire(r.number, "verify", people["qa"], {"verification_evidence": "ok"},
                signature=sign(people["qa"]))
    with pytest.raises(GuardFailed, match="not effective"):
        engine.fire(r.number, "record_effectiveness", people["qa"],
                    {"effectiveness_result": "not_effective", "effectiveness_evidence": "2 repeats"})
    r = engine.fire(r.number, "not_effective", people["qa"],
                    {"effectiveness_result": "not_effective", "effectiveness_evidence": "2 repeats"},
                    reason="Mix-ups recurred")
    assert r.state == "action_plan"


def test_cancel_needs_reason_and_signature(engine, people):
    r = open_capa(engine, people)
    with pytest.raises(ReasonRequired):
        engine.fire(r.number, "cancel", people["qa"], signature=sign(people["qa"]))
    with pytest.raises(SignatureRequired):
        engine.fire(r.number, "cancel", people["qa"], reason="Duplicate of CAPA-2026-0002")
    r = engine.fire(r.number, "cancel", people["qa"], reason="Duplicate",
                    signature=sign(people["qa"]))
    assert r.state == "cancelled"
    assert engine.get(r.number).outcome == "void"


def test_plan_approver_cannot_be_who_submitted_the_plan(engine, people, make_user):
    """R-P11-10g-2: segregation of duties on the plan approval."""
    both = make_user("bob", "qa", "capa_owner", "employee")
    r = open_capa(engine, people)
    engine.fire(r.number, "assign", people["qa"], {"owner": both})
    engine.fire(r.number, "submit_root_cause", both,
                {"root_cause_category": "method", "root_cause": "x"})
    engine.fire(r.number, "submit_plan", both, {
        "actions": [{"description": "a"}], "effectiveness_criteria": "c"})
    with pytest.raises(SegregationOfDuties, match="someone else"):
        engine.fire(r.number, "approve_plan", both, signature=sign(both))
    # the QA person who raised a CAPA may not approve its plan
    r2 = engine.start("capa", people["qa"], {"title": "Raised by QA", "description": "d"})
    to_plan_approval(engine, people, r2.number)
    with pytest.raises(SegregationOfDuties, match="initiated"):
        engine.fire(r2.number, "approve_plan", people["qa"], signature=sign(people["qa"]))
    assert engine.fire(r2.number, "approve_plan", people["qa2"],
                       signature=sign(people["qa2"])).state == "implementation"


def test_tasks_follow_states_and_notification_is_queued(engine, people):
    r = open_capa(engine, people)
    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == r.number)).scalar_one()
        tasks = s.execute(select(Task).where(Task.record_id == rec.id)).scalars().all()
        assert [(t.state, t.role, t.status) for t in tasks] == [("open", "qa", TaskStatus.OPEN)]
        assert tasks[0].due_at == clock.now() + timedelta(days=5)
        msgs = s.execute(select(OutboxMessage).where(OutboxMessage.record_id == rec.id)).scalars()
        assert [m.recipient_role for m in msgs] == ["qa"]
    engine.fire(r.number, "assign", people["qa"], {"owner": people["owner"]})
    with engine.reader() as s:
        tasks = s.execute(select(Task).where(Task.record_id == rec.id).order_by(Task.id)).scalars()
        rows = [(t.state, t.status, t.assignee_id is not None) for t in tasks]
        assert rows == [("open", TaskStatus.DONE, False),
                        ("investigation", TaskStatus.OPEN, True)]
