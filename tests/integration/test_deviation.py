"""Deviation walked end to end (report -> triage -> investigation -> signed QA review -> closed),
with the CAPA hand-off on closing, the "no CAPA" rationale rule, recurrence links, the return
path and cancellation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.factories import sign
from workflow import canonical, clock
from workflow.audit import integrity
from workflow.db.models import AuditEvent, OutboxMessage, Record, RecordLink, Signature, Task, TaskStatus
from workflow.db.seals import mac_ok
from workflow.errors import (
    GuardFailed,
    NotAuthorized,
    ReasonRequired,
    SegregationOfDuties,
    SignatureRequired,
    ValidationFailed,
)
from workflow.identity import users as identity

RATIONALE = "Isolated operator slip; the SOP and training are adequate."  # >= 20 characters


@pytest.fixture
def inv(make_user):
    """The investigator: a deviation owner (no QA role)."""
    return make_user("dora", "deviation_owner", "employee", full_name="Dora Investigator")


def report(engine, people, **extra):
    data = {"title": "Cold room 2 above 8 C for 3 hours",
            "description": "Expected 2-8 C; logger showed 9.4 C peak; found at morning check.",
            "occurred_on": "2026-02-28", "discovered_on": "2026-03-01", "area": "Warehouse",
            "product": "Vaccine X", "batch": "L2026-014",
            "immediate_actions": "Stock quarantined; cold room door seal replaced.", **extra}
    return engine.start("deviation", people["emp"], data)


def triage(engine, people, number, investigator, reason=None, **extra):
    data = {"classification": "major", "classification_rationale": "Potential product impact.",
            "capa_required": True, "investigator": investigator, **extra}
    return engine.fire(number, "triage", people["qa"], data, reason=reason)


def investigate(engine, number, investigator, reason=None, **extra):
    data = {"root_cause_category": "equipment", "root_cause": "5 Whys: worn door seal.",
            "impact_assessment": "Stability data cover 3 h at 9.4 C; no impact.",
            "batch_disposition": "release", **extra}
    return engine.fire(number, "submit_investigation", investigator, data, reason=reason)


def row(s, number):
    return s.execute(select(Record).where(Record.number == number)).scalar_one()


def capas(s):
    return s.execute(select(Record).where(Record.workflow_key == "capa")).scalars().all()


def test_major_deviation_end_to_end_raises_linked_capa_on_closing(engine, people, inv):
    """R-P11-10f-1 R-P11-10e-1 R-P11-10e-2 R-P11-50-1 R-P11-70-1 R-P11-10h-1: every step in
    order with tasks following the states; QA's closing signature is bound to the content it
    signed; closing a major deviation raises a CAPA as the system user, linked back."""
    r = report(engine, people)
    assert (r.number, r.state) == ("DEV-2026-0001", "reported")
    with engine.reader() as s:
        dev = row(s, r.number)
        assert dev.due_original == dev.due_current == clock.now() + timedelta(days=30)
        t = s.execute(select(Task).where(Task.record_id == dev.id)).scalar_one()
        assert (t.state, t.role, t.status, t.due_at) == (
            "reported", "qa", TaskStatus.OPEN, clock.now() + timedelta(days=2))
        assert [m.recipient_role for m in s.execute(
            select(OutboxMessage).where(OutboxMessage.record_id == dev.id)).scalars()] == ["qa"]

    r = triage(engine, people, r.number, inv)
    assert r.state == "investigation"
    with engine.reader() as s:
        dev = row(s, r.number)
        open_tasks = s.execute(select(Task).where(Task.record_id == dev.id,
                                                  Task.status == TaskStatus.OPEN)).scalars().all()
        inv_id = identity.get_user(s, inv).id
        assert [(t.state, t.role, t.assignee_id) for t in open_tasks] == [
            ("investigation", "deviation_owner", inv_id)]
        assert open_tasks[0].due_at == clock.now() + timedelta(days=21)

    clock.advance(timedelta(days=3))
    r = investigate(engine, r.number, inv)
    assert r.state == "qa_review"
    with pytest.raises(SignatureRequired, match="'Approved'"):
        engine.fire(r.number, "approve", people["qa"])
    assert engine.get(r.number).state == "qa_review"
    r = engine.fire(r.number, "approve", people["qa"], {"qa_comments": "Investigation adequate."},
                    signature=sign(people["qa"]))
    assert r.state == "closed"
    assert r.created == ("CAPA-2026-0001",)

    with engine.reader() as s:
        dev = row(s, r.number)
        assert dev.outcome == "done" and dev.closed_at == clock.now()
        assert not s.execute(select(Task).where(Task.record_id == dev.id,
                                                Task.status == TaskStatus.OPEN)).first()
        moves = s.execute(select(AuditEvent).where(AuditEvent.record_id == dev.id,
                                                   AuditEvent.action == "transition")
                          .order_by(AuditEvent.seq)).scalars().all()
        assert [(m.from_state, m.to_state, m.actor_name) for m in moves] == [
            ("reported", "investigation", "Quinn QA"),
            ("investigation", "qa_review", "Dora Investigator"),
            ("qa_review", "closed", "Quinn QA")]
        # the signature: printed name, meaning, role, bound to the record content it signed
        sig = s.execute(select(Signature).where(Signature.record_id == dev.id)).scalar_one()
        assert (sig.meaning, sig.signer_name, sig.signer_role, sig.transition) == (
            "Approved", "Quinn QA", "qa", "approve")
        assert sig.signed_at == clock.now()
        assert sig.content_hash == canonical.sha256(canonical.record_content(
            dev.number, "deviation", dev.definition_hash, dev.data))
        assert mac_ok(engine.signing_key, sig, dev.number)
        assert not mac_ok(engine.signing_key, sig, "DEV-2026-0002")  # not transferable
        assert moves[-1].changes == {"signature_id": sig.id}

        # the CAPA: copied fields, initiated by the system, linked back, reason in its trail
        (capa,) = capas(s)
        system = identity.system_user(s)
        assert capa.number == "CAPA-2026-0001" and capa.state == "open"
        assert capa.created_by_id == system.id
        assert capa.data["title"] == dev.data["title"]
        assert capa.data["description"] == dev.data["description"]
        assert capa.data["source"] == "deviation"
        assert capa.data["source_deviation"] == dev.number
        links = s.execute(select(RecordLink.source_id, RecordLink.target_id, RecordLink.kind,
                                 RecordLink.created_by_id)).all()
        assert links == [(capa.id, dev.id, "spawned_by", system.id)]
        create = s.execute(select(AuditEvent).where(AuditEvent.record_id == capa.id,
                                                    AuditEvent.action == "create")).scalar_one()
        assert create.actor_id == system.id
        assert create.actor_name == "System (scheduler and engine)"
        assert create.reason == f"created by {dev.number} on entering closed (step by Quinn QA)"
        assert create.changes["source_deviation"] == [None, dev.number]
        assert s.execute(select(Task.role, Task.status).where(Task.record_id == capa.id)).all() \
            == [("qa", TaskStatus.OPEN)]
        subjects = s.execute(select(OutboxMessage.subject).where(
            OutboxMessage.record_id == dev.id).order_by(OutboxMessage.id)).scalars().all()
        assert subjects[-1] == f"{dev.number}: CAPA raised from closed deviation"

        report_ = integrity.verify(s, engine.signing_key)
        assert report_.ok, [str(p) for p in report_.problems]


@pytest.mark.parametrize("classification, capa_required, rationale, raises_capa", [
    ("critical", True, None, True),
    ("major", True, None, True),
    ("minor", True, None, True),
    ("minor", False, RATIONALE, False),
])
def test_capa_is_raised_on_closing_exactly_when_required(engine, people, inv, classification,
                                                          capa_required, rationale, raises_capa):
    """R-P11-10f-2: major/critical or "CAPA required" raise one linked CAPA; a minor deviation
    with a documented no-CAPA rationale closes without one."""
    r = report(engine, people)
    extra = {"capa_rationale": rationale} if rationale else {}
    triage(engine, people, r.number, inv, classification=classification,
           capa_required=capa_required, **extra)
    investigate(engine, r.number, inv)
    r = engine.fire(r.number, "approve", people["qa"], signature=sign(people["qa"]))
    assert r.state == "closed"
    assert len(r.created) == (1 if raises_capa else 0)
    with engine.reader() as s:
        found = capas(s)
        assert [c.data["source_deviation"] for c in found] == ([r.number] if raises_capa else [])
        assert s.execute(select(func.count()).select_from(RecordLink)
                         .where(RecordLink.kind == "spawned_by")).scalar_one() == len(found)


@pytest.mark.parametrize("data, message", [
    ({"classification": "minor", "capa_required": False},
     "No CAPA needs a written rationale"),
    ({"classification": "minor", "capa_required": False, "capa_rationale": "  Not systemic.  "},
     "at least 20 characters"),
    ({"classification": "major", "capa_required": False, "capa_rationale": RATIONALE},
     "A major or critical deviation always needs a CAPA"),
    ({"classification": "critical", "capa_required": False, "capa_rationale": RATIONALE},
     "A major or critical deviation always needs a CAPA"),
])
def test_no_capa_without_rationale_is_refused_at_triage(engine, people, inv, data, message):
    """R-P11-10f-2: "CAPA required = no" needs a written rationale and only on a minor one."""
    r = report(engine, people)
    with pytest.raises(GuardFailed, match=message) as exc:
        triage(engine, people, r.number, inv, **data)
    assert exc.value.transition == "triage"
    rec = engine.get(r.number)
    assert (rec.state, rec.version) == ("reported", r.version)
    assert "capa_required" not in rec.data


def test_no_capa_with_rationale_is_accepted_and_checked_again_at_approval(engine, people, inv):
    """R-P11-10f-2: the rationale is kept; QA cannot drop the CAPA at approval without one."""
    r = report(engine, people)
    r = triage(engine, people, r.number, inv, classification="minor", capa_required=False,
               capa_rationale=RATIONALE)
    assert r.state == "investigation"
    assert engine.get(r.number).data["capa_rationale"] == RATIONALE
    investigate(engine, r.number, inv)
    # QA upgrades to major at signing but tries to keep "no CAPA": refused, nothing signed
    with pytest.raises(GuardFailed, match="always needs a CAPA"):
        engine.fire(r.number, "approve", people["qa"], {"classification": "major"},
                    signature=sign(people["qa"]))
    # QA clears the rationale while keeping "no CAPA": refused
    with pytest.raises(GuardFailed, match="written rationale"):
        engine.fire(r.number, "approve", people["qa"], {"capa_rationale": ""},
                    signature=sign(people["qa"]))
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Signature)).scalar_one() == 0
    # QA upgrades and raises the CAPA: the CAPA follows the values as signed
    r = engine.fire(r.number, "approve", people["qa"],
                    {"classification": "major", "capa_required": True},
                    signature=sign(people["qa"]), reason="Second lot affected: major")
    assert r.state == "closed" and r.created == ("CAPA-2026-0001",)


def test_earlier_similar_deviations_are_linked_as_recurrence(engine, people, inv):
    """R-P11-10f-2 R-P11-10e-2: recurrence links to earlier deviations; a recurring
    deviation needs a CAPA; resubmitting the same list adds no duplicate links."""
    first = report(engine, people, title="Cold room 2 excursion (January)")
    second = report(engine, people, title="Cold room 2 excursion (February)")
    r = report(engine, people)
    triage(engine, people, r.number, inv, classification="minor", capa_required=False,
           capa_rationale=RATIONALE)
    with pytest.raises(GuardFailed, match="recurs"):
        investigate(engine, r.number, inv, similar_deviations=[first.number])
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(RecordLink)).scalar_one() == 0

    r = investigate(engine, r.number, inv, similar_deviations=[first.number.lower(),
                                                                second.number],
                    capa_required=True, reason="Recurrence: a CAPA is needed after all")
    assert r.state == "qa_review"
    engine.fire(r.number, "return_investigation", people["qa"],
                {"qa_comments": "Add the trend."}, reason="Trend missing")
    investigate(engine, r.number, inv, similar_deviations=[first.number, second.number],
                root_cause="Worn door seal; seal not in PM plan.")
    with engine.reader() as s:
        ids = {n: row(s, n).id for n in (first.number, second.number, r.number)}
        links = s.execute(select(RecordLink.source_id, RecordLink.target_id, RecordLink.kind)
                          .order_by(RecordLink.id)).all()
        assert links == [(ids[r.number], ids[first.number], "recurrence_of"),
                         (ids[r.number], ids[second.number], "recurrence_of")]
        assert row(s, r.number).data["similar_deviations"] == [first.number, second.number]
        upd = s.execute(select(AuditEvent).where(AuditEvent.record_id == ids[r.number],
                                                 AuditEvent.transition == "submit_investigation",
                                                 AuditEvent.action == "update")
                        .order_by(AuditEvent.seq)).scalars().first()
        assert upd.changes["similar_deviations"] == [None, [first.number, second.number]]
        assert upd.changes["capa_required"] == [False, True]


def test_similar_deviation_must_be_an_existing_deviation(engine, people, inv):
    """R-P11-10f-2: a recurrence reference to a CAPA or to nothing is refused, no link."""
    r = report(engine, people)
    triage(engine, people, r.number, inv)
    capa = engine.start("capa", people["emp"], {"title": "t", "description": "d"})
    for bad in (capa.number, "DEV-2026-0999"):
        with pytest.raises(ValidationFailed, match=f"similar_deviations: .*{bad}") as exc:
            investigate(engine, r.number, inv, similar_deviations=[bad])
        assert set(exc.value.errors) == {"similar_deviations"}
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(RecordLink)).scalar_one() == 0
    assert engine.get(r.number).state == "investigation"


def test_bad_recurrence_reference_message_names_the_workflow(engine, people, inv):
    """R-A11-5-1: the refusal says which kind of record was expected."""
    r = report(engine, people)
    triage(engine, people, r.number, inv)
    capa = engine.start("capa", people["emp"], {"title": "t", "description": "d"})
    with pytest.raises(ValidationFailed) as exc:
        investigate(engine, r.number, inv, similar_deviations=[capa.number])
    assert exc.value.errors == {"similar_deviations": f"no deviation record {capa.number}"}


def test_deviation_cannot_list_itself_as_an_earlier_similar_deviation(engine, people, inv):
    """R-P11-10f-2 R-A11-5-1: recurrence data and recurrence links agree."""
    r = report(engine, people)
    triage(engine, people, r.number, inv)
    with pytest.raises(ValidationFailed, match="similar_deviations"):
        investigate(engine, r.number, inv, similar_deviations=[r.number])


def test_cancel_needs_qa_a_reason_and_a_signature_and_raises_no_capa(engine, people, inv):
    """R-P11-10e-7 R-P11-10g-1 R-P11-10c-1: cancel (never delete) with a reason, signed."""
    r = report(engine, people)
    triage(engine, people, r.number, inv, classification="critical")
    with pytest.raises(NotAuthorized, match="Quality Assurance"):
        engine.fire(r.number, "cancel", inv, reason="dup", signature=sign(inv))
    with pytest.raises(ReasonRequired, match="reason is required to cancel deviation"):
        engine.fire(r.number, "cancel", people["qa"], signature=sign(people["qa"]))
    with pytest.raises(ReasonRequired):
        engine.fire(r.number, "cancel", people["qa"], reason="   ",
                    signature=sign(people["qa"]))
    with pytest.raises(SignatureRequired, match="Cancelled"):
        engine.fire(r.number, "cancel", people["qa"], reason="Duplicate of DEV-2026-0002")
    assert engine.get(r.number).state == "investigation"
    r = engine.fire(r.number, "cancel", people["qa"], {"qa_comments": "Reported twice."},
                    reason="Duplicate of DEV-2026-0002", signature=sign(people["qa"]))
    assert r.state == "cancelled" and r.created == ()
    with engine.reader() as s:
        dev = row(s, r.number)
        assert dev.outcome == "void" and dev.closed_at == clock.now()
        ev = s.execute(select(AuditEvent).where(AuditEvent.record_id == dev.id,
                                                AuditEvent.transition == "cancel",
                                                AuditEvent.action == "transition")).scalar_one()
        assert ev.reason == "Duplicate of DEV-2026-0002" and ev.actor_name == "Quinn QA"
        assert s.execute(select(Signature.meaning).where(Signature.record_id == dev.id)
                         ).scalars().all() == ["Cancelled"]
        assert capas(s) == []
        assert not s.execute(select(Task).where(Task.record_id == dev.id,
                                                Task.status == TaskStatus.OPEN)).first()


def test_return_investigation_needs_comments_and_reason_and_raises_one_capa(engine, people, inv):
    """R-P11-10f-1 R-P11-10e-7: QA returns the investigation for rework; the investigator
    gets a fresh task; the loop does not raise a second CAPA."""
    r = report(engine, people)
    triage(engine, people, r.number, inv)
    investigate(engine, r.number, inv)
    with pytest.raises(ValidationFailed, match="qa_comments: is required") as exc:
        engine.fire(r.number, "return_investigation", people["qa"], reason="Incomplete")
    assert set(exc.value.errors) == {"qa_comments"}
    with pytest.raises(ReasonRequired):
        engine.fire(r.number, "return_investigation", people["qa"],
                    {"qa_comments": "Impact on batch L2026-015 not assessed."})
    with pytest.raises(NotAuthorized):
        engine.fire(r.number, "return_investigation", inv,
                    {"qa_comments": "x"}, reason="x")
    r = engine.fire(r.number, "return_investigation", people["qa"],
                    {"qa_comments": "Impact on batch L2026-015 not assessed."},
                    reason="Incomplete impact assessment")
    assert r.state == "investigation"
    with engine.reader() as s:
        dev = row(s, r.number)
        tasks = s.execute(select(Task).where(Task.record_id == dev.id).order_by(Task.id)
                          ).scalars().all()
        inv_id = identity.get_user(s, inv).id
        assert [(t.state, t.status, t.closed_by_transition) for t in tasks] == [
            ("reported", TaskStatus.DONE, "triage"),
            ("investigation", TaskStatus.DONE, "submit_investigation"),
            ("qa_review", TaskStatus.DONE, "return_investigation"),
            ("investigation", TaskStatus.OPEN, None)]
        assert tasks[-1].assignee_id == inv_id
        ev = s.execute(select(AuditEvent).where(AuditEvent.record_id == dev.id,
                                                AuditEvent.transition == "return_investigation",
                                                AuditEvent.action == "transition")).scalar_one()
        assert ev.reason == "Incomplete impact assessment"
    investigate(engine, r.number, inv,
                impact_assessment="Batches L2026-014 and -015 assessed; no impact.")
    r = engine.fire(r.number, "approve", people["qa2"], signature=sign(people["qa2"]))
    assert r.state == "closed" and r.created == ("CAPA-2026-0001",)
    with engine.reader() as s:
        assert len(capas(s)) == 1


def test_approver_is_neither_the_reporter_nor_who_submitted_the_investigation(
        engine, people, inv):
    """R-P11-10g-2: segregation of duties on the QA review signature."""
    r = engine.start("deviation", people["qa"], {
        "title": "Raised by QA", "description": "d", "occurred_on": "2026-03-01",
        "discovered_on": "2026-03-01", "area": "QC", "immediate_actions": "none needed"})
    triage(engine, people, r.number, inv)
    engine.fire(r.number, "submit_investigation", people["qa2"], {
        "root_cause_category": "method", "root_cause": "r", "impact_assessment": "i",
        "batch_disposition": "not_applicable"})
    with pytest.raises(SegregationOfDuties, match="initiated") as exc:
        engine.fire(r.number, "approve", people["qa"], signature=sign(people["qa"]))
    assert exc.value.rule == "not_initiator"
    with pytest.raises(SegregationOfDuties, match="submit_investigation") as exc:
        engine.fire(r.number, "approve", people["qa2"], signature=sign(people["qa2"]))
    assert exc.value.rule == "not_actor_of:submit_investigation"
    assert engine.get(r.number).state == "qa_review"
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Signature)).scalar_one() == 0


def test_impossible_dates_are_refused_at_reporting_and_triage(engine, people, inv):
    """R-P11-10f-2: discovery cannot precede occurrence nor lie in the future, whether the
    dates are reported or corrected by QA at triage."""
    with pytest.raises(GuardFailed, match="discovered before it occurred"):
        report(engine, people, occurred_on="2026-03-01", discovered_on="2026-02-27")
    with pytest.raises(GuardFailed, match="cannot be in the future"):
        report(engine, people, occurred_on="2026-03-01", discovered_on="2026-03-03")
    r = report(engine, people, occurred_on="2026-02-20", discovered_on="2026-02-27")
    with pytest.raises(GuardFailed, match="discovered before it occurred"):
        triage(engine, people, r.number, inv, occurred_on="2026-02-28")
    with pytest.raises(GuardFailed, match="cannot be in the future"):
        triage(engine, people, r.number, inv, discovered_on="2026-03-03")
    assert engine.get(r.number).state == "reported"


def test_impossible_dates_are_refused_at_reporting_and_qa_can_correct_dates(engine, people, inv):
    """R-P11-10f-2: impossible dates are refused when reported; a wrong (but possible) date
    can be corrected by QA at triage, with old and new values in the trail."""
    with pytest.raises(GuardFailed, match="discovered before it occurred"):
        report(engine, people, occurred_on="2026-03-01", discovered_on="2026-02-27")
    r = report(engine, people, occurred_on="2026-02-20", discovered_on="2026-02-27")
    r = triage(engine, people, r.number, inv, occurred_on="2026-02-26",
               reason="Logbook shows the excursion began on 26 February")
    assert r.state == "investigation"
    assert engine.get(r.number).data["occurred_on"] == "2026-02-26"
