"""The step controls the engine enforces for every caller (issue 15): a claim holds, steps are
offered only when they can succeed, segregation of duties across steps, not before a step is
due, and parents wait for their linked records. Each refusal names its rule and changes
nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.factories import sign
from workflow import tasks
from workflow.db.models import Task, TaskStatus
from workflow.errors import ClaimHeld, SegregationOfDuties


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
