"""Training assignment walked end to end: the trainee signs "Read and understood", the trainer
verifies (signed); the due-date timer escalates overdue training to the coordinator as the
system user; the assessment path; nobody trains or verifies themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.factories import sign
from workflow import clock
from workflow.audit import integrity
from workflow.db.models import (
    AuditEvent,
    OutboxMessage,
    Record,
    Signature,
    Task,
    TaskStatus,
    Timer,
    TimerStatus,
)
from workflow.errors import (
    GuardFailed,
    NotAuthorized,
    ReasonRequired,
    SegregationOfDuties,
    SignatureRejected,
    SignatureRequired,
    ValidationFailed,
)
from workflow.identity import users as identity


@pytest.fixture
def crew(people, make_user):
    return {
        **people,
        "coord": make_user("tina", "training_coordinator", "employee",
                           full_name="Tina Coordinator"),
        "trainer": make_user("trent", "trainer", "employee", full_name="Trent Trainer"),
    }


def assign(engine, crew, **extra):
    data = {"title": "SOP-12 v5 read and understood", "document": "SOP-12",
            "document_version": "5", "trainee": crew["emp"], "trainer": crew["trainer"],
            "due_date": "2026-03-10", **extra}
    return engine.start("training_assignment", crew["coord"], data)


def row(s, number):
    return s.execute(select(Record).where(Record.number == number)).scalar_one()


def tasks_of(s, record_id, status=None):
    q = select(Task).where(Task.record_id == record_id).order_by(Task.id)
    if status is not None:
        q = q.where(Task.status == status)
    return s.execute(q).scalars().all()


def timers_of(s, record_id):
    return s.execute(select(Timer).where(Timer.record_id == record_id).order_by(Timer.id)
                     ).scalars().all()


def test_training_end_to_end_read_and_understood(engine, crew):
    """R-P11-10f-1 R-P11-50-1 R-P11-50-2 R-P11-70-1 R-P11-10g-2: assigned -> trainee signs
    exactly "Read and understood" -> trainer verifies (signed) -> completed."""
    r = assign(engine, crew)
    assert (r.number, r.state) == ("TRN-2026-0001", "assigned")
    with engine.reader() as s:
        rec = row(s, r.number)
        emma = identity.get_user(s, crew["emp"])
        assert rec.data["method"] == "read_and_understood"  # the field default
        assert rec.data["assessment_required"] is False
        (t,) = tasks_of(s, rec.id)
        # the trainee's task is due at the end of the due date (UTC)
        assert (t.state, t.role, t.assignee_id, t.due_at) == (
            "assigned", None, emma.id, datetime(2026, 3, 11, tzinfo=UTC))
        (tm,) = timers_of(s, rec.id)
        assert (tm.transition, tm.fire_at, tm.status) == (
            "mark_overdue", datetime(2026, 3, 11, tzinfo=UTC), TimerStatus.PENDING)
        msg = s.execute(select(OutboxMessage).where(OutboxMessage.record_id == rec.id)
                        ).scalar_one()
        assert msg.recipient_user_id == emma.id

    with pytest.raises(SignatureRequired, match="'Read and understood'"):
        engine.fire(r.number, "complete", crew["emp"])
    r = engine.fire(r.number, "complete", crew["emp"], {"trainee_comment": "Clear."},
                    signature=sign(crew["emp"]))
    assert r.state == "trainer_verification"
    r = engine.fire(r.number, "verify", crew["trainer"], {"verification_comment": "Discussed."},
                    signature=sign(crew["trainer"]))
    assert r.state == "completed"
    with engine.reader() as s:
        rec = row(s, r.number)
        assert rec.outcome == "done" and rec.closed_at == clock.now()
        sigs = s.execute(select(Signature).where(Signature.record_id == rec.id)
                         .order_by(Signature.id)).scalars().all()
        assert [(x.meaning, x.signer_name, x.signer_role, x.transition) for x in sigs] == [
            ("Read and understood", "Emma Employee", "employee", "complete"),
            ("Verified", "Trent Trainer", "trainer", "verify")]
        # leaving "assigned" cancelled the overdue timer
        assert [tm.status for tm in timers_of(s, rec.id)] == [TimerStatus.CANCELLED]
        assert tasks_of(s, rec.id, TaskStatus.OPEN) == []
        report = integrity.verify(s, engine.signing_key)
        assert report.ok, [str(p) for p in report.problems]


@pytest.mark.parametrize("who", ["po", "coord", "trainer"])
def test_only_the_trainee_may_complete(engine, crew, who):
    """R-P11-10g-2 R-P11-200-3: another employee, the coordinator or the trainer cannot sign
    someone else's "Read and understood"."""
    r = assign(engine, crew)
    with pytest.raises(GuardFailed, match="Only the trainee can sign their own training"):
        engine.fire(r.number, "complete", crew[who], signature=sign(crew[who]))
    with engine.reader() as s:
        assert s.execute(select(Signature)).first() is None
    assert engine.get(r.number).state == "assigned"


def test_trainee_cannot_be_signed_for_by_someone_else(engine, crew):
    """R-P11-200-3: the signature is the actor's own; no signing on behalf of another."""
    r = assign(engine, crew)
    with pytest.raises(SignatureRejected, match="on behalf of"):
        engine.fire(r.number, "complete", crew["emp"], signature=sign(crew["coord"]))
    # nor can the coordinator present the trainee's signature
    with pytest.raises(GuardFailed, match="Only the trainee"):
        engine.fire(r.number, "complete", crew["coord"], signature=sign(crew["emp"]))
    with engine.reader() as s:
        assert s.execute(select(Signature)).first() is None
    assert engine.get(r.number).state == "assigned"


def test_overdue_timer_moves_record_as_system_user_and_opens_coordinator_task(engine, crew):
    """R-P11-10h-1 R-P11-10e-2 R-P11-10f-1: the scheduler fires the timer as the system
    user, the trail says so and why; the coordinator gets the escalation task."""
    r = assign(engine, crew)
    assert engine.run_due_timers() == []
    clock.advance(timedelta(days=8, hours=14, minutes=59))  # 2026-03-10 23:59 UTC
    assert engine.run_due_timers() == []
    assert engine.get(r.number).state == "assigned"

    clock.advance(timedelta(minutes=2))  # 2026-03-11 00:01 UTC: past the due date
    assert engine.run_due_timers() == [f"{r.number}: mark_overdue -> overdue"]
    with engine.reader() as s:
        rec = row(s, r.number)
        system = identity.system_user(s)
        assert rec.state == "overdue"
        ev = s.execute(select(AuditEvent).where(AuditEvent.record_id == rec.id,
                                                AuditEvent.action == "transition")).scalar_one()
        assert (ev.from_state, ev.to_state, ev.transition) == ("assigned", "overdue",
                                                                "mark_overdue")
        assert (ev.actor_id, ev.actor_name) == (system.id, "System (scheduler and engine)")
        assert ev.reason == "timer: mark_overdue due at 2026-03-11 00:00 UTC"
        assert ev.at == clock.now()
        done, opened = tasks_of(s, rec.id)
        assert (done.state, done.status, done.closed_by_id, done.closed_by_transition) == (
            "assigned", TaskStatus.DONE, system.id, "mark_overdue")
        assert (opened.state, opened.role, opened.status, opened.due_at) == (
            "overdue", "training_coordinator", TaskStatus.OPEN, clock.now() + timedelta(days=7))
        assert [tm.status for tm in timers_of(s, rec.id)] == [TimerStatus.FIRED]
        msgs = s.execute(select(OutboxMessage).where(OutboxMessage.record_id == rec.id)
                         .order_by(OutboxMessage.id)).scalars().all()
        assert [(m.recipient_role, m.subject) for m in msgs[1:]] == [
            ("training_coordinator", f"{rec.number}: Training is overdue"),
            (None, f"{rec.number}: Your training is overdue")]

    # a second run finds nothing to do; the trainee can still complete from overdue
    assert engine.run_due_timers() == []
    r = engine.fire(r.number, "complete", crew["emp"], signature=sign(crew["emp"]))
    assert r.state == "trainer_verification"


def test_timer_of_a_record_that_moved_on_does_nothing(engine, crew):
    """R-P11-10f-1: a trainee who completes in time is never marked overdue."""
    r = assign(engine, crew)
    engine.fire(r.number, "complete", crew["emp"], signature=sign(crew["emp"]))
    before = engine.get(r.number)
    clock.advance(timedelta(days=30))
    assert engine.run_due_timers() == []
    after = engine.get(r.number)
    assert (after.state, after.version, after.audit_seq) == (
        "trainer_verification", before.version, before.audit_seq)


def test_stale_pending_timer_from_an_earlier_visit_is_cancelled_not_fired(engine, crew):
    """R-P11-10f-1: defence in depth: a timer still pending for an earlier state visit (e.g.
    left by a crash) is cancelled when it comes due; the record does not move."""
    r = assign(engine, crew)
    engine.fire(r.number, "complete", crew["emp"], signature=sign(crew["emp"]))
    with engine.unit() as s:
        rec = row(s, r.number)
        s.add(Timer(record_id=rec.id, state_visit=1, transition="mark_overdue",
                    fire_at=clock.now() + timedelta(days=1), status=TimerStatus.PENDING))
    before = engine.get(r.number)
    clock.advance(timedelta(days=2))
    out = engine.run_due_timers()
    assert len(out) == 1 and out[0].endswith("record moved on")
    after = engine.get(r.number)
    assert (after.state, after.version, after.audit_seq) == (
        "trainer_verification", before.version, before.audit_seq)
    with engine.reader() as s:
        assert [tm.status for tm in timers_of(s, after.id)] == [
            TimerStatus.CANCELLED, TimerStatus.CANCELLED]


def test_reschedule_from_overdue_needs_reason_and_future_date_and_rearms_timer(engine, crew):
    """R-P11-10e-7 R-P11-10f-2: the coordinator reschedules; a new timer watches the new date."""
    r = assign(engine, crew)
    clock.advance(timedelta(days=9))
    engine.run_due_timers()
    with pytest.raises(ReasonRequired):
        engine.fire(r.number, "reschedule", crew["coord"], {"due_date": "2026-03-31"})
    with pytest.raises(GuardFailed, match="must be in the future"):
        engine.fire(r.number, "reschedule", crew["coord"], {"due_date": "2026-03-11"},
                    reason="Trainee on leave")
    r = engine.fire(r.number, "reschedule", crew["coord"], {"due_date": "2026-03-31"},
                    reason="Trainee on leave until 2026-03-20")
    assert r.state == "assigned"
    with engine.reader() as s:
        tms = timers_of(s, r.record_id)
        assert [(tm.status, tm.fire_at) for tm in tms] == [
            (TimerStatus.FIRED, datetime(2026, 3, 11, tzinfo=UTC)),
            (TimerStatus.PENDING, datetime(2026, 4, 1, tzinfo=UTC))]


def test_assessment_path(engine, crew):
    """R-P11-10f-1 R-P11-10f-2 R-P11-10g-2: an assessment is recorded by the trainer (never by
    the trainee) before verification; a failed one sends the trainee back with a new date."""
    r = assign(engine, crew, assessment_required=True, method="classroom")
    with pytest.raises(GuardFailed, match="requires an assessment"):
        engine.fire(r.number, "complete", crew["emp"], signature=sign(crew["emp"]))
    r = engine.fire(r.number, "complete_for_assessment", crew["emp"],
                    signature=sign(crew["emp"]))
    assert r.state == "assessment"
    with pytest.raises(NotAuthorized):
        engine.fire(r.number, "record_assessment", crew["emp"],
                    {"assessment_score": 100, "assessment_passed": True})
    with pytest.raises(ValidationFailed, match="assessment_score: must be at most 100"):
        engine.fire(r.number, "record_assessment", crew["trainer"],
                    {"assessment_score": 150, "assessment_passed": True})
    with pytest.raises(GuardFailed, match='use "Assessment failed"'):
        engine.fire(r.number, "record_assessment", crew["trainer"],
                    {"assessment_score": 40, "assessment_passed": False})
    with pytest.raises(ReasonRequired):
        engine.fire(r.number, "fail_assessment", crew["trainer"],
                    {"assessment_score": 40, "assessment_passed": False,
                     "due_date": "2026-03-20"})
    r = engine.fire(r.number, "fail_assessment", crew["trainer"],
                    {"assessment_score": 40, "assessment_passed": False,
                     "due_date": "2026-03-20"}, reason="Below the 80 % pass mark")
    assert r.state == "assigned"
    r = engine.fire(r.number, "complete_for_assessment", crew["emp"],
                    signature=sign(crew["emp"]))
    r = engine.fire(r.number, "record_assessment", crew["trainer"],
                    {"assessment_score": 90, "assessment_passed": True,
                     "assessment_notes": "All questions answered."},
                    reason="Second attempt after retraining")  # R-P11-10e-7: replaces the first
    assert r.state == "trainer_verification"
    r = engine.fire(r.number, "verify", crew["trainer"], signature=sign(crew["trainer"]))
    assert r.state == "completed"
    with engine.reader() as s:
        rec = row(s, r.number)
        assert (rec.data["assessment_score"], rec.data["assessment_passed"]) == (90, True)
        assert [x.meaning for x in s.execute(
            select(Signature).where(Signature.record_id == rec.id).order_by(Signature.id)
        ).scalars()] == ["Read and understood", "Read and understood", "Verified"]


def test_trainer_cannot_be_the_trainee(engine, crew, make_user):
    """R-P11-10g-2: a trainee holding the trainer role can neither assess nor verify their
    own training, nor be assigned as its trainer; only the assigned trainer verifies."""
    tess = make_user("tess", "trainer", "employee", full_name="Tess Trainer-Trainee")
    r = assign(engine, crew, trainee=tess, trainer=None, assessment_required=True)
    engine.fire(r.number, "complete_for_assessment", tess, signature=sign(tess))
    with pytest.raises(GuardFailed, match="Trainees cannot assess themselves"):
        engine.fire(r.number, "record_assessment", tess,
                    {"assessment_score": 100, "assessment_passed": True})
    engine.fire(r.number, "record_assessment", crew["trainer"],
                {"assessment_score": 85, "assessment_passed": True})
    # a separation rule now (not_named_in: [trainee], R-WF-13), so it is not even offered
    with pytest.raises(SegregationOfDuties, match="named as Trainee.*not the trainee"):
        engine.fire(r.number, "verify", tess, signature=sign(tess))
    assert "verify" not in [t.name for t in engine.available_transitions(r.number, tess)]
    with pytest.raises(GuardFailed, match="cannot be their own trainer"):
        engine.fire(r.number, "assign_trainer", crew["coord"], {"trainer": tess})
    other = make_user("otto", "trainer", "employee")
    engine.fire(r.number, "assign_trainer", crew["coord"], {"trainer": other})
    with pytest.raises(GuardFailed, match="Only the assigned trainer"):
        engine.fire(r.number, "verify", crew["trainer"], signature=sign(crew["trainer"]))
    assert engine.fire(r.number, "verify", other, signature=sign(other)).state == "completed"


def test_assignment_cannot_be_created_with_the_trainee_as_trainer(engine, crew, make_user):
    """R-P11-10g-2: the trainer/trainee separation holds from creation on."""
    tess = make_user("tess", "trainer", "employee")
    with pytest.raises((GuardFailed, ValidationFailed)):
        assign(engine, crew, trainee=tess, trainer=tess)
