"""Change request walked end to end, with the two-signature approval (QA + process owner), the
training hand-off (one training assignment per affected document row) and the reject,
return and withdraw paths."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.factories import sign
from workflow import clock
from workflow.audit import integrity
from workflow.db.models import AuditEvent, Record, RecordLink, Signature, Task, TaskStatus, Timer
from workflow.errors import (
    GuardFailed,
    LinkedRecordsOpen,
    NotAuthorized,
    ReasonRequired,
    SegregationOfDuties,
    TransitionNotAvailable,
)
from workflow.identity import users as identity


@pytest.fixture
def co(make_user):
    """The change owner."""
    return make_user("carl", "change_owner", "employee", full_name="Carl Change-Owner")


def draft(engine, people, **extra):
    data = {"title": "SOP-12 v5: second-person label check",
            "description": "Add a second-person verification of the label roll at line start.",
            **extra}
    return engine.start("change_request", people["emp"], data)


def to_approval(engine, people, co, number, training_impact="read_and_understood", **extra):
    engine.fire(number, "submit", people["emp"], {
        "justification": "CAPA-2026-0001 action 1", "change_type": "document", "owner": co})
    return assess(engine, people, co, number, training_impact, **extra)


def assess(engine, people, co, number, training_impact="read_and_understood", reason=None,
           **extra):
    # the affected documents and trainees are approved (and locked) with the assessment
    if training_impact != "none" and "affected_documents" not in extra:
        extra["affected_documents"] = docs(("SOP-12", "5", people["emp"], False))
    return engine.fire(number, "submit_for_approval", co, {
        "classification": "major", "quality_impact": "Reduces label mix-up risk.",
        "regulatory_impact": "none", "validation_impact": "none",
        "training_impact": training_impact, "implementation_plan": "Issue SOP-12 v5.",
        "target_date": "2026-04-15", **extra}, reason=reason)


def approve_both(engine, people, number):
    engine.fire(number, "approve", people["qa"], signature=sign(people["qa"]))
    return engine.fire(number, "approve", people["po"], signature=sign(people["po"]))


def docs(*rows):
    return [{"document": d, "document_version": v, "trainee": t, "due": "2026-05-15",
             "assessment_required": a} for d, v, t, a in rows]


def open_tasks(s, record_id):
    return s.execute(select(Task).where(Task.record_id == record_id,
                                        Task.status == TaskStatus.OPEN).order_by(Task.id)
                     ).scalars().all()


def row(s, number):
    return s.execute(select(Record).where(Record.number == number)).scalar_one()


def test_change_request_end_to_end_with_training(engine, people, co, make_user):
    """R-P11-10f-1 R-P11-10g-1 R-P11-10g-2 R-P11-50-1 R-P11-70-1 R-P11-10e-1: draft to closed,
    two approval signatures, one training assignment per affected document row, QA verifies."""
    tom = make_user("tom", "employee", full_name="Tom Trainee")
    r = draft(engine, people)
    assert (r.number, r.state) == ("CR-2026-0001", "draft")
    # the approvers sign the affected documents and trainees: complete before approval
    with pytest.raises(GuardFailed, match="document, version, trainee and due date"):
        to_approval(engine, people, co, r.number,
                    affected_documents=[{"document": "SOP-12", "document_version": "5"}])
    with pytest.raises(GuardFailed, match="lists its affected documents"):
        assess(engine, people, co, r.number, affected_documents=[])
    rows = docs(("SOP-12", "5", people["emp"], False), ("SOP-12", "5", tom, True),
                ("WI-3", "2", tom, False))
    r = assess(engine, people, co, r.number, affected_documents=rows)
    assert r.state == "approval"
    r = approve_both(engine, people, r.number)
    assert r.state == "implementation"
    with engine.reader() as s:
        (t,) = open_tasks(s, r.record_id)
        # the implementation task is due at the end of the target date (UTC)
        assert (t.state, t.role, t.assignee_id) == (
            "implementation", "change_owner", identity.get_user(s, co).id)
        assert t.due_at.isoformat() == "2026-04-16T00:00:00+00:00"

    r = engine.fire(r.number, "complete_implementation", co, {
        "implementation_summary": "SOP-12 v5 and WI-3 v2 effective 2026-03-02."})
    assert r.state == "training"
    assert r.created == ("TRN-2026-0001", "TRN-2026-0002", "TRN-2026-0003")

    with engine.reader() as s:
        cr = row(s, r.number)
        system = identity.system_user(s)
        trns = s.execute(select(Record).where(Record.workflow_key == "training_assignment")
                         .order_by(Record.id)).scalars().all()
        assert [(x.data["document"], x.data["document_version"], x.data["trainee"],
                 x.data["due_date"], x.data["assessment_required"], x.data["method"])
                for x in trns] == [
            ("SOP-12", "5", "emma", "2026-05-15", False, "read_and_understood"),
            ("SOP-12", "5", "tom", "2026-05-15", True, "read_and_understood"),
            ("WI-3", "2", "tom", "2026-05-15", False, "read_and_understood")]
        assert [x.title for x in trns] == ["Training: SOP-12 version 5",
                                          "Training: SOP-12 version 5",
                                          "Training: WI-3 version 2"]
        assert all(x.state == "assigned" and x.created_by_id == system.id for x in trns)
        links = s.execute(select(RecordLink.source_id, RecordLink.target_id, RecordLink.kind)
                          .order_by(RecordLink.id)).all()
        assert links == [(x.id, cr.id, "spawned_by") for x in trns]
        # each trainee has a task on their assignment, and a timer watches the due date
        tom_id = identity.get_user(s, tom).id
        assert [open_tasks(s, x.id)[0].assignee_id for x in trns][1:] == [tom_id, tom_id]
        assert s.execute(select(func.count()).select_from(Timer)).scalar_one() == 3
        create = s.execute(select(AuditEvent).where(AuditEvent.record_id == trns[0].id,
                                                    AuditEvent.action == "create")).scalar_one()
        assert create.reason == f"created by {cr.number} on entering training (step by " \
                                "Carl Change-Owner)"

    # the change waits for the training assignments it created (waits_for, R-WF-15)
    with pytest.raises(LinkedRecordsOpen) as info:
        engine.fire(r.number, "confirm_training", co,
                    {"training_summary": "TRN-2026-0001..0003 completed."})
    assert info.value.open_records == ["TRN-2026-0001", "TRN-2026-0002", "TRN-2026-0003"]
    for trn in info.value.open_records:
        engine.fire(trn, "cancel", people["qa"], reason="trained in the classroom session")
    r = engine.fire(r.number, "confirm_training", co,
                    {"training_summary": "TRN-2026-0001..0003 closed: classroom session."})
    assert r.state == "verification"
    # the change owner (no QA role) may not verify
    with pytest.raises(NotAuthorized):
        engine.fire(r.number, "verify", co, {"verification_evidence": "x"}, signature=sign(co))
    r = engine.fire(r.number, "verify", people["qa2"],
                    {"verification_evidence": "SOP-12 v5 in use at line 3."},
                    signature=sign(people["qa2"]))
    assert r.state == "closed"
    with engine.reader() as s:
        cr = row(s, r.number)
        assert cr.outcome == "done" and cr.closed_at == clock.now()
        sigs = s.execute(select(Signature).where(Signature.record_id == cr.id)
                         .order_by(Signature.id)).scalars().all()
        assert [(x.meaning, x.signer_name, x.signer_role) for x in sigs] == [
            ("Approved", "Quinn QA", "qa"), ("Approved", "Paul Process-Owner", "process_owner"),
            ("Verified and approved for closure", "Quentin QA", "qa")]
        moves = s.execute(select(AuditEvent.to_state).where(
            AuditEvent.record_id == cr.id, AuditEvent.action == "transition")
            .order_by(AuditEvent.seq)).scalars().all()
        assert moves == ["impact_assessment", "approval", "implementation", "training",
                         "verification", "closed"]
        report = integrity.verify(s, engine.signing_key)
        assert report.ok, [str(p) for p in report.problems]


def test_two_signature_approval_qa_and_process_owner(engine, people, co):
    """R-P11-10g-2 R-P11-10g-3 R-P11-70-1: quorum 2, one per role, two different people; the
    record stays in approval after the first signature; both roles get a task."""
    r = draft(engine, people)
    to_approval(engine, people, co, r.number)
    with engine.reader() as s:
        tasks = open_tasks(s, r.record_id)
        assert sorted((t.state, t.role) for t in tasks) == [
            ("approval", "process_owner"), ("approval", "qa")]
        assert all(t.due_at == clock.now() + timedelta(days=7) for t in tasks)

    first = engine.fire(r.number, "approve", people["qa"], signature=sign(people["qa"]))
    assert (first.state, first.moved, first.signatures_needed) == ("approval", False, 1)
    assert first.signature_id is not None

    with pytest.raises(SegregationOfDuties, match="already signed") as exc:
        engine.fire(r.number, "approve", people["qa"], signature=sign(people["qa"]))
    assert exc.value.rule == "distinct_signers"
    with pytest.raises(SegregationOfDuties, match="cover the roles you hold") as exc:
        engine.fire(r.number, "approve", people["qa2"], signature=sign(people["qa2"]))
    assert exc.value.rule == "one_per_role"
    assert "process_owner" in str(exc.value)
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Signature)).scalar_one() == 1
        assert row(s, r.number).state == "approval"

    second = engine.fire(r.number, "approve", people["po"], signature=sign(people["po"]))
    assert (second.state, second.moved, second.signatures_needed) == ("implementation", True, 0)
    with engine.reader() as s:
        cr = row(s, r.number)
        sigs = s.execute(select(Signature).where(Signature.record_id == cr.id)
                         .order_by(Signature.id)).scalars().all()
        assert [(x.signer_username, x.signer_role, x.meaning) for x in sigs] == [
            ("quinn", "qa", "Approved"), ("paul", "process_owner", "Approved")]
        assert sigs[0].id == first.signature_id and sigs[1].id == second.signature_id
        assert len({x.state_visit for x in sigs}) == 1
        # one transition event, carrying the completing signature
        (move,) = s.execute(select(AuditEvent).where(AuditEvent.record_id == cr.id,
                                                     AuditEvent.transition == "approve",
                                                     AuditEvent.action == "transition")
                            ).scalars().all()
        assert move.changes == {"signature_id": second.signature_id}
        signs = s.execute(select(AuditEvent.actor_name).where(
            AuditEvent.record_id == cr.id, AuditEvent.action == "sign")
            .order_by(AuditEvent.seq)).scalars().all()
        assert signs == ["Quinn QA", "Paul Process-Owner"]


def test_process_owner_may_sign_first(engine, people, co):
    """R-P11-10g-2: the order of the two signatures does not matter."""
    r = draft(engine, people)
    to_approval(engine, people, co, r.number)
    first = engine.fire(r.number, "approve", people["po"], signature=sign(people["po"]))
    assert (first.moved, first.signatures_needed) == (False, 1)
    assert engine.fire(r.number, "approve", people["qa2"],
                       signature=sign(people["qa2"])).state == "implementation"


def test_approval_signatures_do_not_carry_over_a_rework_loop(engine, people, co):
    """R-P11-10g-2 R-P11-70-2: after a return for rework, both signatures are needed again."""
    r = draft(engine, people)
    to_approval(engine, people, co, r.number)
    engine.fire(r.number, "approve", people["qa"], signature=sign(people["qa"]))
    with pytest.raises(ReasonRequired):
        engine.fire(r.number, "return_for_rework", people["po"])
    r = engine.fire(r.number, "return_for_rework", people["po"],
                    reason="Validation impact understated")
    assert r.state == "impact_assessment"
    engine.fire(r.number, "submit_for_approval", co, {"validation_impact": "verification"})
    again = engine.fire(r.number, "approve", people["po"], signature=sign(people["po"]))
    assert (again.state, again.moved, again.signatures_needed) == ("approval", False, 1)
    # quinn's earlier signature belongs to the earlier visit: quinn may sign again
    assert engine.fire(r.number, "approve", people["qa"],
                       signature=sign(people["qa"])).state == "implementation"


def test_initiator_cannot_approve_even_holding_the_role(engine, people, co):
    """R-P11-10g-2: not_initiator on the approval signature."""
    r = engine.start("change_request", people["po"], {"title": "t", "description": "d"})
    engine.fire(r.number, "submit", people["po"], {
        "justification": "j", "change_type": "process", "owner": co})
    engine.fire(r.number, "submit_for_approval", co, {
        "classification": "minor", "quality_impact": "none", "regulatory_impact": "none",
        "validation_impact": "none", "training_impact": "none", "implementation_plan": "p",
        "target_date": "2026-03-20"})
    with pytest.raises(SegregationOfDuties, match="initiated") as exc:
        engine.fire(r.number, "approve", people["po"], signature=sign(people["po"]))
    assert exc.value.rule == "not_initiator"


def test_change_without_training_impact_skips_training(engine, people, co):
    """R-P11-10f-2: the training step is taken exactly when there is a training impact."""
    r = draft(engine, people)
    to_approval(engine, people, co, r.number, training_impact="none",
                affected_documents=docs(("SOP-12", "5", people["emp"], False)))
    approve_both(engine, people, r.number)
    with pytest.raises(GuardFailed, match="no training impact"):
        engine.fire(r.number, "complete_implementation", co, {"implementation_summary": "done"})
    r = engine.fire(r.number, "complete_implementation_no_training", co,
                    {"implementation_summary": "done"})
    assert r.state == "verification" and r.created == ()


def test_training_due_dates_cannot_be_in_the_past(engine, people, co):
    """R-P11-10f-2: no training assignment is created already overdue."""
    r = draft(engine, people)
    rows = docs(("SOP-12", "5", people["emp"], False))
    rows[0]["due"] = "2026-03-01"
    with pytest.raises(GuardFailed, match="cannot be in the past"):
        to_approval(engine, people, co, r.number, affected_documents=rows)
    assess(engine, people, co, r.number)  # due 2026-05-15
    approve_both(engine, people, r.number)
    # the approved due date passes before implementation completes: refused again
    clock.set(clock.now() + timedelta(days=80))
    with pytest.raises(GuardFailed, match="cannot be in the past"):
        engine.fire(r.number, "complete_implementation", co, {"implementation_summary": "done"})
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Record).where(
            Record.workflow_key == "training_assignment")).scalar_one() == 0


def test_reject_needs_a_reason_and_is_final(engine, people, co):
    """R-P11-10e-7 R-P11-10c-1: rejection carries a reason, ends void, nothing more possible."""
    r = draft(engine, people)
    to_approval(engine, people, co, r.number)
    with pytest.raises(ReasonRequired, match="reject change"):
        engine.fire(r.number, "reject", people["po"])
    with pytest.raises(NotAuthorized):
        engine.fire(r.number, "reject", co, reason="no")
    r = engine.fire(r.number, "reject", people["po"], reason="Not justified by the CAPA")
    assert r.state == "rejected"
    with engine.reader() as s:
        cr = row(s, r.number)
        assert cr.outcome == "void" and cr.closed_at == clock.now()
        ev = s.execute(select(AuditEvent).where(AuditEvent.record_id == cr.id,
                                                AuditEvent.transition == "reject")).scalar_one()
        assert (ev.reason, ev.actor_name) == ("Not justified by the CAPA", "Paul Process-Owner")
        assert open_tasks(s, cr.id) == []
    with pytest.raises(TransitionNotAvailable, match="possible now: none"):
        engine.fire(r.number, "approve", people["qa"], signature=sign(people["qa"]))


@pytest.mark.parametrize("state", ["draft", "impact_assessment", "approval"])
def test_withdraw_needs_a_reason_by_initiator_or_qa(engine, people, co, state):
    """R-P11-10e-7 R-P11-10g-1: withdraw before implementation, with a reason."""
    r = draft(engine, people)
    if state != "draft":
        engine.fire(r.number, "submit", people["emp"], {
            "justification": "j", "change_type": "document", "owner": co})
    if state == "approval":
        engine.fire(r.number, "submit_for_approval", co, {
            "classification": "minor", "quality_impact": "none", "regulatory_impact": "none",
            "validation_impact": "none", "training_impact": "none", "implementation_plan": "p",
            "target_date": "2026-03-20"})
    assert engine.get(r.number).state == state
    with pytest.raises(ReasonRequired, match="withdraw change request"):
        engine.fire(r.number, "withdraw", people["emp"])
    with pytest.raises(NotAuthorized):
        engine.fire(r.number, "withdraw", co, reason="mine now")
    who = people["emp"] if state != "approval" else people["qa"]
    r = engine.fire(r.number, "withdraw", who, reason="Superseded by CR-2026-0002")
    assert r.state == "withdrawn"
    with engine.reader() as s:
        cr = row(s, r.number)
        assert cr.outcome == "void"
        ev = s.execute(select(AuditEvent).where(AuditEvent.record_id == cr.id,
                                                AuditEvent.transition == "withdraw")).scalar_one()
        assert ev.reason == "Superseded by CR-2026-0002"


def test_cannot_withdraw_once_implementation_started(engine, people, co):
    """R-P11-10f-1: an implemented change is reverted by a new change, not withdrawn."""
    r = draft(engine, people)
    to_approval(engine, people, co, r.number)
    approve_both(engine, people, r.number)
    with pytest.raises(TransitionNotAvailable, match="'implementation'"):
        engine.fire(r.number, "withdraw", people["emp"], reason="changed my mind")
    assert engine.get(r.number).state == "implementation"


def test_dual_role_first_signer_does_not_block_a_valid_pair(engine, people, co, make_user):
    """R-P11-10g-2 R-P11-10g-3: one QA and one process owner, two different people, in any
    order, whatever other roles they also hold."""
    pat = make_user("pat", "qa", "process_owner", "employee", full_name="Pat Dual-Role")
    r = draft(engine, people)
    to_approval(engine, people, co, r.number)
    first = engine.fire(r.number, "approve", pat, signature=sign(pat))
    assert (first.moved, first.signatures_needed) == (False, 1)
    r = engine.fire(r.number, "approve", people["qa"], signature=sign(people["qa"]))
    assert r.state == "implementation"
    with engine.reader() as s:
        roles = s.execute(select(Signature.signer_username, Signature.signer_role)
                          .order_by(Signature.id)).all()
        # pat held both roles when signing, and the signature says so
        assert sorted(roles) == [("pat", "qa+process_owner"), ("quinn", "qa")]


def test_each_approver_task_closes_when_that_role_has_signed(engine, people, co):
    """R-P11-10g-2: QA and the process owner each get a task; QA's closes when QA signs,
    the process owner's stays in their inbox until they sign."""
    r = draft(engine, people)
    to_approval(engine, people, co, r.number)

    def open_roles():
        with engine.reader() as s:
            return sorted(s.execute(select(Task.role).where(
                Task.record_id == r.record_id, Task.status == TaskStatus.OPEN)).scalars())

    assert open_roles() == ["process_owner", "qa"]
    engine.fire(r.number, "approve", people["qa"], signature=sign(people["qa"]))
    assert open_roles() == ["process_owner"]
    engine.fire(r.number, "approve", people["po"], signature=sign(people["po"]))
    assert open_roles() == ["change_owner"]
