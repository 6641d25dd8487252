"""Bad input is refused with the specific error, a message a person can act on, and nothing
written: the record row, its tasks, its audit trail, signatures, links, outbox, timers and the
record-number counters are compared before and after every refused call.

Also the due-date extension: the due date changes only when QA approves with a signature."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.factories import sign
from workflow.audit import integrity
from workflow.db.models import (
    AuditChain,
    AuditEvent,
    DueDateExtension,
    ExtensionStatus,
    OutboxMessage,
    Record,
    RecordCounter,
    RecordLink,
    RoleGrant,
    Signature,
    Task,
    TaskStatus,
    Timer,
)
from workflow.errors import (
    DueDateLocked,
    GuardFailed,
    InactiveUser,
    NotAuthorized,
    ReasonRequired,
    RecordNotFound,
    SegregationOfDuties,
    SignatureRejected,
    SignatureRequired,
    StaleRecord,
    TransitionNotAvailable,
    UnknownUser,
    UnknownWorkflow,
    ValidationFailed,
    WorkflowError,
)
from workflow.identity import users as identity

# ------------------------------------------------------------------ the snapshot helper

_COUNTED = (Record, AuditEvent, Signature, Task, RecordLink, OutboxMessage, Timer,
            DueDateExtension, RoleGrant)


def snapshot(engine, number: str | None = None) -> dict[str, Any]:
    """Everything a refused call could have written: row counts of every table the engine
    writes, the number counters and audit chain heads, and for ``number`` its row (state,
    version, data, due dates, audit head), its tasks, audit events and signatures."""
    with engine.reader() as s:
        snap: dict[str, Any] = {
            "counts": {m.__tablename__: s.execute(select(func.count()).select_from(m))
                       .scalar_one() for m in _COUNTED},
            "counters": s.execute(select(RecordCounter.prefix, RecordCounter.year,
                                         RecordCounter.last_value)
                                  .order_by(RecordCounter.prefix)).all(),
            "chains": s.execute(select(AuditChain.name, AuditChain.seq, AuditChain.head)
                                .order_by(AuditChain.name)).all(),
        }
        if number is not None:
            rec = s.execute(select(Record).where(Record.number == number)).scalar_one()
            snap["record"] = (rec.state, rec.version, rec.state_visit, dict(rec.data),
                              rec.updated_at, rec.closed_at, rec.due_original, rec.due_current,
                              rec.audit_seq, rec.audit_head)
            snap["tasks"] = s.execute(select(Task.id, Task.state, Task.role, Task.assignee_id,
                                             Task.status, Task.due_at, Task.closed_at)
                                      .where(Task.record_id == rec.id).order_by(Task.id)).all()
            snap["audit"] = s.execute(select(AuditEvent.id, AuditEvent.seq, AuditEvent.action,
                                             AuditEvent.hash)
                                      .where(AuditEvent.record_id == rec.id)
                                      .order_by(AuditEvent.seq)).all()
            snap["signatures"] = s.execute(select(func.count()).select_from(Signature)
                                           .where(Signature.record_id == rec.id)).scalar_one()
        return snap


# ------------------------------------------------------------------ a small world


@pytest.fixture
def world(engine, people, make_user):
    """DEV-2026-0001 in 'reported', DEV-2026-0002 in 'investigation' (version 2),
    CAPA-2026-0001 in 'action_plan', a deactivated QA person 'dex'."""
    inv = make_user("dora", "deviation_owner", "employee")
    make_user("dex", "qa", "employee", full_name="Dex Deactivated")
    with engine.unit() as s:
        identity.deactivate_user(s, identity.get_user(s, "dex"),
                                 actor=identity.system_user(s), reason="Left the company")
    base = {"title": "Line 3 stopped", "description": "Interlock tripped.",
            "occurred_on": "2026-03-01", "discovered_on": "2026-03-01", "area": "Packaging",
            "immediate_actions": "Line cleared."}
    reported = engine.start("deviation", people["emp"], base)
    investigating = engine.start("deviation", people["emp"], base)
    engine.fire(investigating.number, "triage", people["qa"], {
        "classification": "major", "classification_rationale": "r", "capa_required": True,
        "investigator": inv})
    capa = engine.start("capa", people["emp"], {"title": "t", "description": "d"})
    engine.fire(capa.number, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(capa.number, "submit_root_cause", people["owner"],
                {"root_cause_category": "method", "root_cause": "r"})
    return {"reported": reported.number, "investigation": investigating.number,
            "capa_plan": capa.number, **people, "inv": inv, "dex": "dex"}


TRIAGE = {"classification": "major", "classification_rationale": "Product impact possible.",
          "capa_required": True, "investigator": "dora"}
INVESTIGATION = {"root_cause_category": "equipment", "root_cause": "r",
                 "impact_assessment": "i", "batch_disposition": "release"}
PLAN = {"actions": [{"description": "Add check", "due": "2026-04-30"}],
        "effectiveness_criteria": "No recurrence in 3 months"}

# (id, record, transition, actor, data, kwargs, error, message, field errors or None)
FIRE_CASES = [
    ("unknown_transition", "reported", "close_everything", "qa", {}, {},
     TransitionNotAvailable,
     r"Deviation has no step called 'close_everything' \(its steps: approve, cancel, "
     r"return_investigation, submit_investigation, triage\)", None),
    ("not_from_this_state", "reported", "approve", "qa", {}, {"signature": "qa"},
     TransitionNotAvailable, r"is in state 'reported'; transition 'approve' is not possible", None),
    ("not_available_lists_only_own", "reported", "approve", "emp", {}, {},
     TransitionNotAvailable, r"\(possible now: none\)", None),
    ("unauthorised_role", "reported", "triage", "emp", TRIAGE, {},
     NotAuthorized,
     r"Triage and assign investigation on DEV-2026-0001 needs one of these roles: "
     r"Quality Assurance", None),
    ("missing_required_field", "reported", "triage", "qa",
     {k: v for k, v in TRIAGE.items() if k != "investigator"}, {},
     ValidationFailed, r"investigator: is required",
     {"investigator": "is required to triage and assign investigation"}),
    ("integer_not_a_number", "capa_plan", "submit_plan", "owner",
     {**PLAN, "effectiveness_check_days": "abc"}, {},
     ValidationFailed, r"effectiveness_check_days: 'abc' is not a whole number",
     {"effectiveness_check_days": "'abc' is not a whole number"}),
    ("integer_out_of_range", "capa_plan", "submit_plan", "owner",
     {**PLAN, "effectiveness_check_days": 0}, {},
     ValidationFailed, r"must be at least 1", {"effectiveness_check_days": "must be at least 1"}),
    ("date_not_iso", "capa_plan", "submit_plan", "owner",
     {**PLAN, "actions": [{"description": "Add check", "due": "31/12/2026"}]}, {},
     ValidationFailed, r"'31/12/2026' is not a date \(YYYY-MM-DD\)",
     {"actions": "item 1 due '31/12/2026' is not a date (YYYY-MM-DD)"}),
    ("choice_not_in_list", "reported", "triage", "qa", {**TRIAGE, "classification": "severe"},
     {}, ValidationFailed, r"'severe' is not one of: minor, major, critical",
     {"classification": "'severe' is not one of: minor, major, critical"}),
    ("boolean_not_yes_no", "reported", "triage", "qa", {**TRIAGE, "capa_required": "maybe"},
     {}, ValidationFailed, r"capa_required: must be yes or no",
     {"capa_required": "must be yes or no"}),
    ("unknown_field", "reported", "triage", "qa", {**TRIAGE, "colour": "red"}, {},
     ValidationFailed, r"colour: is not a field of Deviation",
     {"colour": "is not a field of Deviation"}),
    ("field_not_editable_here", "reported", "triage", "qa", {**TRIAGE, "root_cause": "x"}, {},
     ValidationFailed,
     r"root_cause: cannot be changed when doing 'Triage and assign investigation'",
     {"root_cause": "cannot be changed when doing 'Triage and assign investigation'"}),
    ("user_does_not_exist", "reported", "triage", "qa", {**TRIAGE, "investigator": "nobody"},
     {}, ValidationFailed, r"investigator: no active user nobody",
     {"investigator": "no active user nobody"}),
    ("user_deactivated", "reported", "triage", "qa", {**TRIAGE, "investigator": "dex"},
     {}, ValidationFailed, r"investigator: no active user dex",
     {"investigator": "no active user dex"}),
    ("user_is_the_system_account", "reported", "triage", "qa",
     {**TRIAGE, "investigator": "system"}, {}, ValidationFailed,
     r"investigator: no active user system", {"investigator": "no active user system"}),
    ("reference_of_wrong_workflow", "investigation", "submit_investigation", "inv",
     {**INVESTIGATION, "similar_deviations": ["CAPA-2026-0001"]}, {},
     ValidationFailed, r"similar_deviations: .*CAPA-2026-0001", None),
    ("reference_to_nothing", "investigation", "submit_investigation", "inv",
     {**INVESTIGATION, "similar_deviations": ["DEV-2026-0999"]}, {},
     ValidationFailed, r"similar_deviations: .*DEV-2026-0999", None),
    ("list_not_a_list", "investigation", "submit_investigation", "inv",
     {**INVESTIGATION, "similar_deviations": "DEV-2026-0001"}, {},
     ValidationFailed, r"similar_deviations: must be a list",
     {"similar_deviations": "must be a list"}),
    # R-PERF-75: PostgreSQL's jsonb cannot store a NUL; refused alike on both databases
    ("text_with_nul", "reported", "triage", "qa",
     {**TRIAGE, "classification_rationale": "Product\x00impact"}, {}, ValidationFailed,
     r"classification_rationale: must not contain a NUL character",
     {"classification_rationale": "must not contain a NUL character"}),
    ("reason_blank", "investigation", "cancel", "qa", {}, {"reason": "   ", "signature": "qa"},
     ReasonRequired, r"A reason is required to cancel deviation DEV-2026-0002", None),
    ("signature_missing", "investigation", "cancel", "qa", {}, {"reason": "Duplicate"},
     SignatureRequired, r"'cancel' must be signed \(meaning: 'Cancelled'\)", None),
    ("signature_of_someone_else", "investigation", "cancel", "qa", {},
     {"reason": "Duplicate", "signature": "qa2"},
     SignatureRejected, r"signing on behalf of someone else is not possible", None),
    ("guard", "investigation", "submit_investigation", "inv",
     {**INVESTIGATION, "capa_required": False, "capa_rationale": "A long enough rationale."},
     {}, GuardFailed, r"A major or critical deviation always needs a CAPA", None),
    ("deactivated_actor", "reported", "triage", "dex", TRIAGE, {},
     InactiveUser, r"User 'dex' is deactivated and cannot act or sign\.", None),
    ("unknown_actor", "reported", "triage", "ghost", TRIAGE, {},
     UnknownUser, r"User 'ghost' does not exist\.", None),
]


@pytest.mark.parametrize("case", FIRE_CASES, ids=[c[0] for c in FIRE_CASES])
def test_bad_fire_is_refused_clearly_and_writes_nothing(engine, world, case):
    """R-P11-10f-1 R-P11-10f-2 R-P11-10g-1 R-A11-5-1 R-P11-10e-1 R-P11-10d-1 R-P11-200-3:
    the specific error, an actionable message, no side effect at all."""
    _id, which, transition, actor, data, kwargs, error, message, field_errors = case
    number = world[which]
    actor = world.get(actor, actor)
    if "signature" in kwargs:
        kwargs = {**kwargs, "signature": sign(world[kwargs["signature"]])}
    before = snapshot(engine, number)
    with pytest.raises(error, match=message) as exc:
        engine.fire(number, transition, actor, data, **kwargs)
    assert type(exc.value) is error  # the specific class, not a parent
    if field_errors is not None:
        assert exc.value.errors == field_errors
    assert snapshot(engine, number) == before


def test_transition_not_available_carries_what_is_possible(engine, world):
    """R-P11-10f-1: the error names the state and what the caller could do instead."""
    with pytest.raises(TransitionNotAvailable) as exc:
        engine.fire(world["reported"], "approve", world["qa"])
    e = exc.value
    assert (e.number, e.transition, e.state, e.available) == (
        world["reported"], "approve", "reported", ["triage", "cancel"])


def test_unauthorised_error_names_required_roles(engine, world):
    """R-P11-10g-1."""
    with pytest.raises(NotAuthorized) as exc:
        engine.fire(world["reported"], "triage", world["emp"], TRIAGE)
    assert exc.value.required_roles == ("qa",)


def test_unknown_record_is_refused_and_writes_nothing(engine, world):
    """R-P11-10f-1 R-P11-10d-2."""
    before = snapshot(engine)
    for ref in ("DEV-2026-0999", 99999):
        with pytest.raises(RecordNotFound, match=f"Record {ref} does not exist") as exc:
            engine.fire(ref, "triage", world["qa"], TRIAGE)
        assert exc.value.ref == ref
    assert snapshot(engine) == before


def test_stale_expected_version_is_refused_with_both_versions(engine, world):
    """R-P11-10f-3: optimistic concurrency, with a message saying what to do."""
    number = world["investigation"]
    assert engine.get(number).version == 2
    before = snapshot(engine, number)
    with pytest.raises(StaleRecord, match=r"you had version 1, it is now at version 2\)\. "
                                          r"Reload it and try again\.") as exc:
        engine.fire(number, "submit_investigation", world["inv"], INVESTIGATION,
                    expected_version=1)
    assert (exc.value.number, exc.value.expected, exc.value.actual) == (number, 1, 2)
    assert snapshot(engine, number) == before
    # the current version goes through
    assert engine.fire(number, "submit_investigation", world["inv"], INVESTIGATION,
                       expected_version=2).state == "qa_review"


def test_second_of_two_concurrent_decisions_loses(engine, world):
    """R-P11-10f-3: two QA people read version 1; the second decision is refused."""
    number = world["reported"]
    v = engine.get(number).version
    engine.fire(number, "triage", world["qa"], TRIAGE, expected_version=v)
    before = snapshot(engine, number)
    with pytest.raises(StaleRecord):
        engine.fire(number, "cancel", world["qa2"], reason="dup", signature=sign(world["qa2"]),
                    expected_version=v)
    assert snapshot(engine, number) == before


# ------------------------------------------------------------------ starting a record

DEV = {"title": "Line 3 stopped", "description": "Interlock tripped.",
       "occurred_on": "2026-03-01", "discovered_on": "2026-03-01", "area": "Packaging",
       "immediate_actions": "Line cleared."}

START_CASES = [
    ("unknown_workflow", "deviaton", "emp", DEV, UnknownWorkflow,
     r"There is no published workflow called 'deviaton'", None),
    ("not_allowed_to_start", "deviation", "nora", DEV, NotAuthorized,
     r"Starting a Deviation needs one of the roles: employee, deviation_owner, qa", None),
    ("missing_required", "deviation", "emp", {k: v for k, v in DEV.items() if k != "area"},
     ValidationFailed, r"area: is required", {"area": "is required"}),
    ("date_not_iso", "deviation", "emp", {**DEV, "occurred_on": "31/12/2026"},
     ValidationFailed, r"occurred_on: '31/12/2026' is not a date \(YYYY-MM-DD\)",
     {"occurred_on": "'31/12/2026' is not a date (YYYY-MM-DD)"}),
    ("date_is_a_datetime", "deviation", "emp", {**DEV, "occurred_on": datetime(2026, 3, 1)},
     ValidationFailed, r"occurred_on: must be a date without a time",
     {"occurred_on": "must be a date without a time"}),
    ("string_too_long", "deviation", "emp", {**DEV, "title": "x" * 201},
     ValidationFailed, r"title: is longer than 200 characters",
     {"title": "is longer than 200 characters"}),
    ("string_multi_line", "deviation", "emp", {**DEV, "area": "Pack\naging"},
     ValidationFailed, r"area: must be a single line", {"area": "must be a single line"}),
    ("field_not_editable_at_start", "deviation", "emp", {**DEV, "classification": "minor"},
     ValidationFailed, r"classification: cannot be changed when starting",
     {"classification": "cannot be changed when starting"}),
    ("unknown_field", "deviation", "emp", {**DEV, "severity": "high"},
     ValidationFailed, r"severity: is not a field of Deviation",
     {"severity": "is not a field of Deviation"}),
    ("reference_of_wrong_workflow", "capa", "emp",
     {"title": "t", "description": "d", "source_deviation": "CAPA-2026-0001"},
     ValidationFailed, r"source_deviation: no deviation record CAPA-2026-0001",
     {"source_deviation": "no deviation record CAPA-2026-0001"}),
    ("user_does_not_exist", "capa", "emp", {"title": "t", "description": "d", "owner": "nobody"},
     ValidationFailed, r"owner: no active user nobody", {"owner": "no active user nobody"}),
    ("title_with_nul", "deviation", "emp", {**DEV, "title": "Line\x003 stopped"},
     ValidationFailed, r"title: must not contain a NUL character",
     {"title": "must not contain a NUL character"}),
    ("deactivated_actor", "deviation", "dex", DEV, InactiveUser,
     r"User 'dex' is deactivated and cannot act or sign\.", None),
]


@pytest.mark.parametrize("case", START_CASES, ids=[c[0] for c in START_CASES])
def test_bad_start_is_refused_clearly_and_consumes_no_number(engine, world, make_user, case):
    """R-A11-5-1 R-P11-10g-1 R-P11-10d-1 R-P11-10e-1: nothing written, and the record
    numbering stays gap-free (the refused start gives its number back)."""
    _id, workflow, actor, data, error, message, field_errors = case
    make_user("nora")  # an account without any role
    actor = world.get(actor, actor)
    before = snapshot(engine)
    with pytest.raises(error, match=message) as exc:
        engine.start(workflow, actor, data)
    assert type(exc.value) is error
    if field_errors is not None:
        assert exc.value.errors == field_errors
    assert snapshot(engine) == before
    if workflow in ("deviation", "capa"):
        ok = engine.start(workflow, world["emp"], DEV if workflow == "deviation"
                          else {"title": "t", "description": "d"})
        assert ok.number == {"deviation": "DEV-2026-0003", "capa": "CAPA-2026-0002"}[workflow]


def test_several_bad_fields_are_reported_together(engine, world):
    """R-A11-5-1: a person fixes every problem in one go, not one per attempt."""
    number = world["reported"]
    before = snapshot(engine, number)
    with pytest.raises(ValidationFailed) as exc:
        engine.fire(number, "triage", world["qa"], {
            **TRIAGE, "classification": "severe", "capa_required": "maybe", "colour": "red"})
    assert set(exc.value.errors) == {"classification", "capa_required", "colour"}
    assert snapshot(engine, number) == before


# ------------------------------------------------------------------ due-date extensions

def capa_in_implementation(engine, people):
    """A CAPA whose implementation task inherits the record's due date."""
    r = engine.start("capa", people["emp"], {"title": "t", "description": "d"})
    engine.fire(r.number, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(r.number, "submit_root_cause", people["owner"],
                {"root_cause_category": "method", "root_cause": "r"})
    engine.fire(r.number, "submit_plan", people["owner"], PLAN)
    engine.fire(r.number, "approve_plan", people["qa"], signature=sign(people["qa"]))
    return r.number


def test_extension_request_needs_reason_timezone_and_a_later_date(engine, people):
    """R-P11-10e-7 R-A11-5-1: malformed extension requests are refused, nothing written."""
    number = capa_in_implementation(engine, people)
    due = engine.get(number).due_current
    assert due == datetime(2026, 5, 31, 9, 0, tzinfo=UTC)  # 90 days after creation
    before = snapshot(engine, number)
    with pytest.raises(ReasonRequired, match="request a due-date extension"):
        engine.request_extension(number, people["owner"], due + timedelta(days=30), "  ")
    with pytest.raises(ValidationFailed, match="new_due: needs a time zone"):
        engine.request_extension(number, people["owner"], datetime(2026, 7, 1), "Supplier late")
    with pytest.raises(ValidationFailed, match=r"must be later than the current due date "
                                               r"\(2026-05-31\)"):
        engine.request_extension(number, people["owner"], due - timedelta(days=1), "x")
    with pytest.raises(StaleRecord):
        engine.request_extension(number, people["owner"], due + timedelta(days=30), "x",
                                 expected_version=1)
    with pytest.raises(WorkflowError, match="There is no extension request #999"):
        engine.decide_extension(999, people["qa"], True, signature=sign(people["qa"]))
    assert snapshot(engine, number) == before


def test_due_date_changes_only_when_qa_approves_with_signature(engine, people):
    """R-P11-10e-2 R-P11-50-1 R-P11-70-1 (Veeva pattern, ref. 1.3): the due date never changes
    until QA approves with a signature; original and current due are both kept; open tasks
    that followed the record's due date move with it."""
    number = capa_in_implementation(engine, people)
    rec = engine.get(number)
    original = rec.due_current
    new_due = original + timedelta(days=30)
    ext_id = engine.request_extension(number, people["owner"], new_due, "Supplier delivery late",
                                      expected_version=rec.version)
    rec = engine.get(number)
    assert (rec.due_original, rec.due_current) == (original, original)
    with engine.reader() as s:
        ext = s.get(DueDateExtension, ext_id)
        assert (ext.status, ext.old_due, ext.new_due) == (
            ExtensionStatus.REQUESTED, original, new_due)

    before = snapshot(engine, number)
    with pytest.raises(SignatureRequired, match="Extension approved"):
        engine.decide_extension(ext_id, people["qa"], True)
    with pytest.raises(NotAuthorized, match="one of: qa"):
        engine.decide_extension(ext_id, people["po"], True, signature=sign(people["po"]))
    assert snapshot(engine, number) == before

    res = engine.decide_extension(ext_id, people["qa"], True, signature=sign(people["qa"]))
    assert res.moved is False and res.signature_id is not None
    rec = engine.get(number)
    assert (rec.due_original, rec.due_current) == (original, new_due)
    with engine.reader() as s:
        ext = s.get(DueDateExtension, ext_id)
        assert (ext.status, ext.signature_id) == (ExtensionStatus.APPROVED, res.signature_id)
        sig = s.get(Signature, res.signature_id)
        assert (sig.meaning, sig.signer_name, sig.signer_role) == (
            "Extension approved", "Quinn QA", "qa")
        (task,) = s.execute(select(Task).where(Task.record_id == rec.id,
                                               Task.status == TaskStatus.OPEN)).scalars().all()
        assert task.due_at == new_due
        actions = s.execute(select(AuditEvent.action).where(AuditEvent.record_id == rec.id)
                            .order_by(AuditEvent.seq)).scalars().all()
        assert actions[-3:] == ["extension_requested", "sign", "due_date_extended"]
        ev = s.execute(select(AuditEvent).where(AuditEvent.record_id == rec.id,
                                                AuditEvent.action == "due_date_extended")
                       ).scalar_one()
        assert ev.actor_name == "Quinn QA" and ev.reason == "Supplier delivery late"
        assert ev.changes["due_current"] == [original.isoformat(timespec="microseconds"),
                                             new_due.isoformat(timespec="microseconds")]
        report = integrity.verify(s, engine.signing_key)
        assert report.ok, [str(p) for p in report.problems]


def test_requester_cannot_approve_their_own_extension(engine, people):
    """R-P11-10g-2: a QA person who asked for more time cannot grant it to themselves."""
    number = capa_in_implementation(engine, people)
    due = engine.get(number).due_current
    ext_id = engine.request_extension(number, people["qa"], due + timedelta(days=14),
                                      "Verification resources short")
    before = snapshot(engine, number)
    with pytest.raises(SegregationOfDuties, match="cannot decide your own extension") as exc:
        engine.decide_extension(ext_id, people["qa"], True, signature=sign(people["qa"]))
    assert exc.value.rule == "not_requester"
    assert snapshot(engine, number) == before
    engine.decide_extension(ext_id, people["qa2"], True, signature=sign(people["qa2"]))
    assert engine.get(number).due_current == due + timedelta(days=14)


def test_rejecting_an_extension_needs_a_reason_and_keeps_the_due_date(engine, people):
    """R-P11-10e-7: rejection with a reason; one pending request at a time."""
    number = capa_in_implementation(engine, people)
    due = engine.get(number).due_current
    ext_id = engine.request_extension(number, people["owner"], due + timedelta(days=30), "late")
    with pytest.raises(DueDateLocked, match="already has an extension request waiting"):
        engine.request_extension(number, people["owner"], due + timedelta(days=60), "later")
    before = snapshot(engine, number)
    with pytest.raises(ReasonRequired, match="reject an extension request"):
        engine.decide_extension(ext_id, people["qa"], False)
    assert snapshot(engine, number) == before
    res = engine.decide_extension(ext_id, people["qa"], False,
                                  reason="Supplier has a second source; no delay accepted")
    assert res.signature_id is None
    rec = engine.get(number)
    assert rec.due_current == rec.due_original == due
    with engine.reader() as s:
        ext = s.get(DueDateExtension, ext_id)
        assert (ext.status, ext.decision_reason) == (
            ExtensionStatus.REJECTED, "Supplier has a second source; no delay accepted")
        ev = s.execute(select(AuditEvent).where(AuditEvent.record_id == rec.id,
                                                AuditEvent.action == "extension_rejected")
                       ).scalar_one()
        assert ev.reason == "Supplier has a second source; no delay accepted"
    with pytest.raises(WorkflowError, match="was already rejected"):
        engine.decide_extension(ext_id, people["qa2"], True, signature=sign(people["qa2"]))
    # a new request may follow a rejected one
    engine.request_extension(number, people["owner"], due + timedelta(days=10), "Short delay")


def test_pending_extension_cannot_move_the_due_date_of_a_closed_record(engine, people):
    """R-P11-10f-1: a closed record's due dates are final."""
    r = engine.start("deviation", people["emp"], DEV)
    inv = "quentin"
    due = engine.get(r.number).due_current
    ext_id = engine.request_extension(r.number, people["emp"], due + timedelta(days=30), "late")
    engine.fire(r.number, "triage", people["qa"], {**TRIAGE, "investigator": inv})
    engine.fire(r.number, "submit_investigation", inv, INVESTIGATION)
    engine.fire(r.number, "approve", people["qa"], signature=sign(people["qa"]))
    assert engine.get(r.number).state == "closed"
    before = snapshot(engine, r.number)
    with pytest.raises(DueDateLocked, match="closed"):
        engine.decide_extension(ext_id, people["qa2"], True, signature=sign(people["qa2"]))
    assert snapshot(engine, r.number) == before
