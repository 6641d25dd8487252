"""The step controls the engine enforces for every caller (issue 15): a claim holds, steps are
offered only when they can succeed, segregation of duties across steps, not before a step is
due, and parents wait for their linked records. Each refusal names its rule and changes
nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tests.factories import give_training, sign
from workflow import clock, tasks
from workflow.db.models import AuditEvent, Task, TaskStatus
from workflow.engine import inputs
from workflow.errors import (
    ClaimHeld,
    LinkedRecordsOpen,
    NotYetOpen,
    ReasonRequired,
    SegregationOfDuties,
)
from workflow.identity import users as identity
from workflow.kpi import Kpi, Period
from workflow.spec.load import load_text


def capa_at(engine, people, state, responsible=None):
    """A CAPA walked to ``state`` (plan_approval, implementation, verification, qa_closure)."""
    r = engine.start("capa", people["emp"], {"title": "Label mix-up", "description": "QC"})
    n = r.number
    engine.fire(n, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(n, "submit_root_cause", people["owner"],
                {"root_cause_category": "method", "root_cause": "Label roll swap"})
    engine.fire(n, "submit_plan", people["owner"], {
        "actions": [{"description": "Second-person check",
                     "responsible": responsible or people["owner"], "due": "2026-04-30"}],
        "effectiveness_criteria": "No mix-ups in 3 months"})
    if state == "plan_approval":
        return n
    engine.fire(n, "approve_plan", people["qa"], signature=sign(people["qa"]))
    if state == "implementation":
        return n
    actions = [{**a, "done": True} for a in engine.get(n).data["actions"]]
    engine.fire(n, "complete_implementation", people["owner"],
                {"implementation_summary": "Done", "actions": actions})
    return n


def open_task(engine, number):
    with engine.reader() as s:
        rec = engine.get(number, session=s)
        return s.execute(select(Task.id).where(Task.record_id == rec.id,
                                               Task.status == TaskStatus.OPEN)).scalar_one()


def option(engine, number, user, transition):
    return next(o for o in engine.step_options(number, user) if o.transition.name == transition)


def test_a_claimed_task_is_completed_only_by_its_holder(engine, people):
    """R-WF-12 R-P11-10g-1 R-WF-11: once Quinn claims QA's plan-approval task, Quentin (also
    QA) is refused, naming the holder, and is not offered the step; the record is unchanged.
    After Quinn releases it, Quentin may approve."""
    n = capa_at(engine, people, "plan_approval")
    tasks.claim(engine, open_task(engine, n), people["qa"])
    before = engine.get(n).version
    with pytest.raises(ClaimHeld, match=r"held by Quinn QA \(quinn\); only they can complete "
                                        r"it .*rule: a claim holds") as info:
        engine.fire(n, "approve_plan", people["qa2"], signature=sign(people["qa2"]))
    assert info.value.holder == "quinn" and info.value.code == "claim_held"
    assert engine.get(n).version == before
    o = option(engine, n, people["qa2"], "approve_plan")
    assert not o.offered and o.rule == "claim_held" and "Quinn QA" in o.refused
    assert option(engine, n, people["qa"], "approve_plan").offered
    tasks.release(engine, open_task(engine, n), people["qa"])
    assert option(engine, n, people["qa2"], "approve_plan").offered
    assert engine.fire(n, "approve_plan", people["qa2"],
                       signature=sign(people["qa2"])).state == "implementation"


def test_a_delegated_task_is_the_delegates(engine, people):
    """R-WF-12: delegating hands the hold on: the delegate completes, the delegator cannot."""
    n = capa_at(engine, people, "plan_approval")
    task_id = open_task(engine, n)
    tasks.claim(engine, task_id, people["qa"])
    tasks.delegate(engine, task_id, people["qa"], people["qa2"], "on leave")
    with pytest.raises(ClaimHeld, match="held by Quentin QA"):
        engine.fire(n, "reject_plan", people["qa"], {"plan_rejection_reason": "x"},
                    reason="x")
    assert engine.fire(n, "reject_plan", people["qa2"], {"plan_rejection_reason": "Vague"},
                       reason="Vague").state == "action_plan"


def test_offered_steps_are_exactly_the_steps_the_engine_accepts(engine, people):
    """R-WF-11 R-P11-10f-1 R-P11-10g-2: at QA closure the verifier is shown Close CAPA as
    refused with the separation rule; firing it is refused with the same message and code.
    Another QA person is offered it and it succeeds."""
    n = capa_at(engine, people, "verification")
    engine.fire(n, "verify", people["qa"], {"verification_evidence": "SOP-12 v4"},
                signature=sign(people["qa"]))
    engine.fire(n, "record_effectiveness", people["qa2"],
                {"effectiveness_result": "effective", "effectiveness_evidence": "0 mix-ups"},
                reason="judged at 90 days by the site head")
    for qa in (people["qa"], people["qa2"]):
        give_training(engine, qa)  # closing requires training on the CAPA SOP
    o = option(engine, n, people["qa"], "close")
    assert not o.offered and o.rule == "segregation_of_duties"
    assert "close" not in [t.name for t in engine.available_transitions(n, people["qa"])]
    with pytest.raises(SegregationOfDuties) as info:
        engine.fire(n, "close", people["qa"], signature=sign(people["qa"]))
    assert info.value.message == o.refused
    assert "separation of duties: not whoever did 'Verify implementation'" in o.refused
    assert info.value.rule == "not_actor_of:verify"
    # people without a role for a step are not offered it at all (nor shown it)
    assert [o.transition.name for o in engine.step_options(n, people["owner"])] == []
    assert option(engine, n, people["qa2"], "close").offered
    assert engine.fire(n, "close", people["qa2"],
                       signature=sign(people["qa2"])).state == "closed"


def test_a_person_named_responsible_for_an_action_cannot_verify_it(engine, people):
    """R-WF-13 R-P11-10g-2: CAPA verification is separated from the implementer and from the
    people the plan names responsible for its actions (not_named_in: [actions.responsible]),
    for a signed step; the refusal names the rule and changes nothing."""
    n = capa_at(engine, people, "verification", responsible=people["qa"])
    before = engine.get(n).version
    with pytest.raises(SegregationOfDuties, match=r"you are named as Actions \(Responsible\) "
                                                  r"on CAPA-2026-0001.*separation of duties: "
                                                  r"not the actions \(responsible\)") as info:
        engine.fire(n, "verify", people["qa"], {"verification_evidence": "x"},
                    signature=sign(people["qa"]))
    assert info.value.rule == "not_named_in:actions.responsible"
    assert engine.get(n).version == before
    assert engine.fire(n, "verify", people["qa2"], {"verification_evidence": "SOP-12 v4"},
                       signature=sign(people["qa2"])).state == "effectiveness_check"


def test_the_implementer_cannot_judge_effectiveness_an_unsigned_step(engine, people,
                                                                     make_user):
    """R-WF-13: separation applies to unsigned steps too: whoever completed the
    implementation may not record the effectiveness check."""
    both = make_user("bea", "qa", "capa_owner", "employee", full_name="Bea Both")
    r = engine.start("capa", people["emp"], {"title": "T", "description": "D"})
    n = r.number
    engine.fire(n, "assign", people["qa"], {"owner": both})
    engine.fire(n, "submit_root_cause", both, {"root_cause_category": "method",
                                                "root_cause": "rc"})
    engine.fire(n, "submit_plan", both, {"actions": [{"description": "a", "done": True}],
                                         "effectiveness_criteria": "c"})
    engine.fire(n, "approve_plan", people["qa"], signature=sign(people["qa"]))
    engine.fire(n, "complete_implementation", both, {"implementation_summary": "s"})
    engine.fire(n, "verify", people["qa"], {"verification_evidence": "e"},
                signature=sign(people["qa"]))
    with pytest.raises(SegregationOfDuties, match="not whoever did 'Complete implementation'"):
        engine.fire(n, "record_effectiveness", both, {"effectiveness_result": "effective",
                                                      "effectiveness_evidence": "ok"},
                    reason="early")


# --------------------------------------------------------------------------- not before / waits


GATED = """\
key: gated
title: Gated check
prefix: GATE
roles:
  qa: Quality Assurance
  employee: Employee
fields:
  title: {type: string}
  check_on: {type: date}
start:
  roles: [employee]
  edits: [title, check_on]
  requires: [title]
states:
  open:
    initial: true
    owner: qa
  checked:
    owner: qa
  done:
    final: true
    outcome: done
transitions:
  - name: check
    label: Check
    from: open
    to: checked
    roles: [qa]
    not_before: {after: 7d}
  - name: confirm
    label: Confirm
    from: checked
    to: done
    roles: [qa]
    not_before: {field: check_on}
    waits_for: [{workflow: capa, link: related, outcome: done}]
"""


def publish_gated(engine):
    d = load_text(GATED, origin="gated.yaml", known_workflows={"gated": None, "capa": None})
    with engine.unit() as s:
        engine.registry.publish(s, d, identity.system_user(s), reason="test")


def transition_event(engine, number, name):
    with engine.reader() as s:
        rec = engine.get(number, session=s)
        return s.execute(select(AuditEvent).where(
            AuditEvent.record_id == rec.id, AuditEvent.action == "transition",
            AuditEvent.transition == name)).scalar_one()


def test_effectiveness_judged_before_it_is_due_needs_a_reason_and_is_flagged(engine, people):
    """R-WF-14 R-UI-6 R-P11-10f-1: CAPA's effectiveness check opens on its due date (90 days
    after verification); before then it is offered with a note, refused without a reason
    (nothing changes), and taken with one is flagged taken_early in its audit event and
    counted by the KPI capa.effectiveness_early."""
    n = capa_at(engine, people, "verification")
    engine.fire(n, "verify", people["qa"], {"verification_evidence": "SOP-12 v4"},
                signature=sign(people["qa"]))
    assert engine.get(n).data["effectiveness_due"] == "2026-05-31"
    o = option(engine, n, people["qa2"], "record_effectiveness")
    assert o.offered and o.note == ("Opens on 2026-05-31 00:00 UTC; taking it now needs a "
                                    "reason and is flagged as taken early.")
    before = engine.get(n).version
    data = {"effectiveness_result": "effective", "effectiveness_evidence": "0 mix-ups"}
    with pytest.raises(ReasonRequired, match=r"record effectiveness check CAPA-2026-0001 before "
                                             r"it opens on 2026-05-31 00:00 UTC \(it is flagged "
                                             r"as taken early\)"):
        engine.fire(n, "record_effectiveness", people["qa2"], data)
    assert engine.get(n).version == before
    engine.fire(n, "record_effectiveness", people["qa2"], data,
                reason="line 3 decommissioned: no further runs to observe")
    ev = transition_event(engine, n, "record_effectiveness")
    assert ev.changes == {"taken_early": {"opens_at": "2026-05-31T00:00:00+00:00"}}
    assert ev.reason == "line 3 decommissioned: no further runs to observe"
    with engine.reader() as s:
        k = Kpi(s, engine.registry, "quinn", Period.months("2026-03", "2026-06"))
        m = k.metric("capa.effectiveness_early")
        assert (m.numerator, m.denominator) == (1, 1)
        assert [r.number for r in k.drill("capa.effectiveness_early", "num")] == [n]


def test_effectiveness_judged_when_due_needs_no_reason(engine, people):
    """R-WF-14: from the due date on, the check is an ordinary step (no flag, no reason)."""
    n = capa_at(engine, people, "verification")
    engine.fire(n, "verify", people["qa"], {"verification_evidence": "e"},
                signature=sign(people["qa"]))
    clock.set(datetime(2026, 5, 31, tzinfo=UTC))
    assert option(engine, n, people["qa2"], "record_effectiveness").note is None
    engine.fire(n, "record_effectiveness", people["qa2"],
                {"effectiveness_result": "effective", "effectiveness_evidence": "ok"})
    assert not transition_event(engine, n, "record_effectiveness").changes
    with engine.reader() as s:
        k = Kpi(s, engine.registry, "quinn", Period.months("2026-03", "2026-06"))
        assert k.metric("capa.effectiveness_early").numerator == 0


def test_a_step_that_refuses_early_says_when_it_opens(engine, people):
    """R-WF-14 R-WF-11: early: refuse (the default) refuses the step until it opens, with
    NotYetOpen saying when, from a duration after entering the state and from a date field;
    it is shown refused, not offered, and nothing changes."""
    publish_gated(engine)
    n = engine.start("gated", people["emp"], {"title": "t", "check_on": "2026-04-01"}).number
    with pytest.raises(NotYetOpen) as info:
        engine.fire(n, "check", people["qa"])
    assert info.value.message == (
        "Check on GATE-2026-0001 is not open yet: it opens on 2026-03-09 09:00 UTC (a set time "
        "after entering 'Open'; rule: not before it is due).")
    assert info.value.opens_at == "2026-03-09T09:00:00+00:00"
    o = option(engine, n, people["qa"], "check")
    assert not o.offered and o.rule == "not_yet_open" and o.refused == info.value.message
    assert engine.get(n).version == 1
    clock.set(datetime(2026, 3, 9, 9, 0, tzinfo=UTC))
    engine.fire(n, "check", people["qa"])
    with pytest.raises(NotYetOpen, match=r"opens on 2026-04-01 00:00 UTC \(Check on is "
                                         r"2026-04-01"):
        engine.fire(n, "confirm", people["qa"])


def test_a_step_waits_for_its_linked_records_with_the_outcome_it_names(engine, people):
    """R-WF-15 R-UI-6: a step waiting for linked CAPAs closed done is refused while one is
    open, listing it with its state (and shows it to the signer); a CAPA cancelled (void)
    does not satisfy 'outcome: done'; a closed-done one does."""
    publish_gated(engine)
    n = engine.start("gated", people["emp"], {"title": "t", "check_on": "2026-03-01"}).number
    capa = engine.start("capa", people["emp"], {"title": "c", "description": "d"}).number
    with engine.unit() as s:
        ctx = engine.context(s)
        a, b = (engine.get(x, session=s) for x in (n, capa))
        inputs.link(ctx, a, b, "related", identity.get_user(s, people["qa"]))
    clock.set(datetime(2026, 3, 9, 9, 0, tzinfo=UTC))
    engine.fire(n, "check", people["qa"])
    with pytest.raises(LinkedRecordsOpen) as info:
        engine.fire(n, "confirm", people["qa"])
    assert info.value.open_records == [capa]
    assert info.value.message == (
        f"Confirm on {n} waits for capa records linked as related closed with outcome done; "
        f"still open: {capa} (open) (rule: parents wait for their children).")
    rec = engine.get(n)
    d = engine.definition_of(rec)
    ((w, x, ok),) = engine.waiting_for(rec, d.transitions["confirm"])
    assert (x.number, x.state, x.closed, ok) == (capa, "open", False, False)
    assert option(engine, n, people["qa"], "confirm").rule == "linked_records_open"
    engine.fire(capa, "cancel", people["qa"], reason="duplicate", signature=sign(people["qa"]))
    with pytest.raises(LinkedRecordsOpen, match=r"still open: CAPA-2026-0001 \(closed: void"):
        engine.fire(n, "confirm", people["qa"])


def test_a_signer_of_a_quorum_is_not_offered_the_step_again(engine, people, make_user):
    """R-WF-11 R-P11-10g-2: once Quinn (QA) has given his signature of the change approval,
    the step is shown to him refused (he has already signed), before any password is typed,
    and signing again is refused with the same rule; the process owner is still offered it."""
    from tests.integration.test_change_request import draft, to_approval

    co = make_user("carl", "change_owner", "employee", full_name="Carl Change-Owner")
    n = draft(engine, people).number
    to_approval(engine, people, co, n)
    assert option(engine, n, people["qa"], "approve").offered
    r = engine.fire(n, "approve", people["qa"], signature=sign(people["qa"]))
    assert not r.moved and r.signatures_needed == 1
    o = option(engine, n, people["qa"], "approve")
    assert not o.offered and o.rule == "segregation_of_duties"
    assert o.refused == (f"You have already signed 'Approve change' on {n}; another person "
                         "must give the next signature (rule: distinct signers).")
    with pytest.raises(SegregationOfDuties, match="already signed") as info:
        engine.fire(n, "approve", people["qa"], signature=sign(people["qa"]))
    assert info.value.rule == "distinct_signers"
    assert option(engine, n, people["po"], "approve").offered
    assert engine.fire(n, "approve", people["po"],
                       signature=sign(people["po"])).state == "implementation"
