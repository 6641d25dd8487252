"""Content controls of the definition language (issue 15): signed content is locked and a
signature whose content changed shows "superseded" (control 1); changing or clearing a value
another person or an earlier step entered needs a reason, and a field an earlier step
required cannot be cleared (control 2). Run on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.factories import sign
from workflow.db.models import AuditEvent, Record, Signature
from workflow.errors import (
    ChangeReasonRequired,
    ContentLocked,
    DefinitionError,
    RequiredEarlier,
)
from workflow.queries import copies, records
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR, load_text

ACTIONS = [
    {"description": "Add second-person label check", "responsible": "olga", "due": "2026-04-30"},
    {"description": "Retrain line 3 operators", "responsible": "olga", "due": "2026-04-15"},
]


def approved_capa(engine, people):
    r = engine.start("capa", people["emp"], {"title": "Label mix-up", "description": "QC."})
    engine.fire(r.number, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(
        r.number,
        "submit_root_cause",
        people["owner"],
        {"root_cause_category": "method", "root_cause": "No label check."},
    )
    engine.fire(
        r.number,
        "submit_plan",
        people["owner"],
        {"actions": ACTIONS, "effectiveness_criteria": "No mix-ups in 3 months"},
    )
    engine.fire(r.number, "approve_plan", people["qa"], signature=sign(people["qa"]))
    return r.number


def snapshot(engine, number):
    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == number)).scalar_one()
        events = s.execute(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.record_id == rec.id)
        ).scalar_one()
        return rec.version, rec.state, dict(rec.data), events


def superseded(engine, number):
    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == number)).scalar_one()
        sigs = records.signatures(s, rec)
        gone = records.superseded(s, rec)
        copy = copies.record_copy(s, engine.registry, rec)
    assert {x["id"]: x["status"] for x in copy["signatures"]} == {
        x.id: ("superseded" if x.id in gone else "valid") for x in sigs
    }
    return [(x.transition, x.signer_username, x.id in gone) for x in sigs]


def test_approved_capa_plan_is_locked_at_implementation(engine, people):
    """R-P11-70-2 R-WF-20: after QA's "Approved", the plan cannot be rewritten at
    implementation (409 content_locked, nothing written); ticking actions done and giving
    evidence stays possible without a reason (``editable_after``)."""
    number = approved_capa(engine, people)
    before = snapshot(engine, number)
    rewritten = [{**ACTIONS[0], "description": "Something else", "done": True}, {**ACTIONS[1], "done": True}]
    with pytest.raises(ContentLocked) as exc:
        engine.fire(
            number,
            "complete_implementation",
            people["owner"],
            {"implementation_summary": "done", "actions": rewritten},
        )
    assert exc.value.field == "actions" and exc.value.signature == "Approved"
    assert "Actions on CAPA-2026-0001 is locked by the signature 'Approved' (Quinn QA" in exc.value.message
    assert "Revise action plan (needs new approval)" in exc.value.message
    # a row added or removed is a change of the approved plan too
    for bad in (
        [{**a, "done": True} for a in ACTIONS] + [{"description": "extra"}],
        [{**ACTIONS[0], "done": True}],
    ):
        with pytest.raises(ContentLocked):
            engine.fire(
                number,
                "complete_implementation",
                people["owner"],
                {"implementation_summary": "done", "actions": bad},
            )
    assert snapshot(engine, number) == before
    done = [{**a, "done": True, "evidence": f"SOP-12 v5 §{i}"} for i, a in enumerate(ACTIONS)]
    r = engine.fire(
        number,
        "complete_implementation",
        people["owner"],
        {"implementation_summary": "done", "actions": done},
    )
    assert r.state == "verification"
    assert superseded(engine, number) == [("approve_plan", "quinn", False)]


def test_revising_an_approved_plan_needs_a_new_approval_and_supersedes_the_old(engine, people):
    """R-P11-70-2 R-WF-20: "Revise action plan" (with a reason) releases the lock; the
    revised plan shows the earlier "Approved" as superseded until QA approves it again."""
    number = approved_capa(engine, people)
    r = engine.fire(number, "revise_plan", people["owner"], reason="Supplier change makes action 2 obsolete")
    assert r.state == "action_plan"
    assert superseded(engine, number) == [("approve_plan", "quinn", False)]
    # olga revises her own plan at the step where she wrote it: no reason for change needed
    engine.fire(
        number,
        "submit_plan",
        people["owner"],
        {"actions": ACTIONS[:1], "effectiveness_criteria": "No mix-ups in 3 months"},
    )
    assert superseded(engine, number) == [("approve_plan", "quinn", True)]
    engine.fire(number, "approve_plan", people["qa2"], signature=sign(people["qa2"]))
    assert superseded(engine, number) == [("approve_plan", "quinn", True), ("approve_plan", "quentin", False)]
    with pytest.raises(ContentLocked):
        engine.fire(
            number,
            "complete_implementation",
            people["owner"],
            {"implementation_summary": "x", "actions": ACTIONS},
        )


def test_revised_change_shows_both_approvals_superseded(engine, people, make_user):
    """R-P11-70-2 R-WF-20: the change's approved documents and trainees are locked; revising
    them goes back to the impact assessment and both approvers sign again."""
    co = make_user("carl", "change_owner", "employee")
    rows = [{"document": "SOP-12", "document_version": "5", "trainee": "emma", "due": "2026-05-15"}]
    r = engine.start("change_request", people["emp"], {"title": "SOP-12 v5", "description": "d"})
    engine.fire(
        r.number, "submit", people["emp"], {"justification": "j", "change_type": "document", "owner": co}
    )
    assessment = {
        "classification": "minor",
        "quality_impact": "none",
        "regulatory_impact": "none",
        "validation_impact": "none",
        "training_impact": "read_and_understood",
        "implementation_plan": "Issue SOP-12 v5.",
        "target_date": "2026-04-15",
    }
    engine.fire(r.number, "submit_for_approval", co, {**assessment, "affected_documents": rows})
    engine.fire(r.number, "approve", people["qa"], signature=sign(people["qa"]))
    engine.fire(r.number, "approve", people["po"], signature=sign(people["po"]))
    engine.fire(r.number, "revise", co, reason="WI-3 is affected as well")
    more = [*rows, {"document": "WI-3", "document_version": "2", "trainee": "emma", "due": "2026-05-15"}]
    engine.fire(r.number, "submit_for_approval", co, {**assessment, "affected_documents": more})
    assert superseded(engine, r.number) == [("approve", "quinn", True), ("approve", "paul", True)]


def test_reclassifying_needs_a_reason_recorded_with_old_and_new_value(engine, people, make_user):
    """R-P11-10e-7 R-P11-10e-2 R-WF-21: QA changing the reporter's dates or its own triage
    classification at a later step needs a reason for change (422 change_reason_required,
    nothing written); given, the update event holds the reason with old and new values."""
    inv = make_user("ivan", "deviation_owner", "employee")
    r = engine.start(
        "deviation",
        people["emp"],
        {
            "title": "Cold room excursion",
            "description": "9.4 C for 3 h",
            "occurred_on": "2026-02-20",
            "discovered_on": "2026-02-27",
            "area": "Warehouse",
            "immediate_actions": "Quarantine",
        },
    )
    triage = {
        "classification": "minor",
        "classification_rationale": "Within stability data.",
        "capa_required": False,
        "investigator": inv,
        "capa_rationale": "Single event, seal worn out; PM plan covers it.",
    }
    before = snapshot(engine, r.number)
    with pytest.raises(ChangeReasonRequired) as exc:
        engine.fire(r.number, "triage", people["qa"], {**triage, "occurred_on": "2026-02-21"})
    assert exc.value.fields == {"occurred_on": "Occurred on"}
    assert snapshot(engine, r.number) == before
    engine.fire(r.number, "triage", people["qa"], triage)  # entering values needs no reason
    engine.fire(
        r.number,
        "submit_investigation",
        inv,
        {
            "root_cause_category": "equipment",
            "root_cause": "Seal",
            "impact_assessment": "None",
            "batch_disposition": "release",
            "capa_required": False,
        },
    )
    before = snapshot(engine, r.number)
    with pytest.raises(
        ChangeReasonRequired,
        match="Changing CAPA required, Classification on DEV-2026-0001 needs a reason for change",
    ):
        engine.fire(
            r.number,
            "approve",
            people["qa2"],
            {"classification": "critical", "capa_required": True},
            signature=sign(people["qa2"]),
        )
    # a field an earlier step required cannot be cleared, with or without a reason
    with pytest.raises(RequiredEarlier) as cleared:
        engine.fire(
            r.number,
            "approve",
            people["qa2"],
            {"classification_rationale": ""},
            signature=sign(people["qa2"]),
            reason="not needed",
        )
    assert cleared.value.errors == {
        "classification_rationale": "was required at 'Triage and assign investigation' and cannot be cleared"
    }
    assert snapshot(engine, r.number) == before
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Signature)).scalar_one() == 0
    r = engine.fire(
        r.number,
        "approve",
        people["qa2"],
        {"classification": "critical", "capa_required": True},
        signature=sign(people["qa2"]),
        reason="Two more lots were stored there",
    )
    assert r.state == "closed"
    with engine.reader() as s:
        ev = s.execute(
            select(AuditEvent).where(AuditEvent.action == "update", AuditEvent.transition == "approve")
        ).scalar_one()
    assert ev.reason == "Two more lots were stored there"
    assert ev.changes == {"capa_required": [False, True], "classification": ["minor", "critical"]}


BASE = (DEFAULT_DEFINITIONS_DIR / "capa.yaml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "    locks: [actions, effectiveness_criteria, effectiveness_check_days]",
            "    locks: [actions, nonsense]",
            "lock on unknown field 'nonsense'",
        ),
        (
            "    editable_after: [actions.done, actions.evidence]",
            "    editable_after: [actions.colour]",
            "'actions' has no column 'colour'",
        ),
        (
            "    editable_after: [actions.done, actions.evidence]",
            "    editable_after: [root_cause]",
            "'root_cause' is not in this step's locks:",
        ),
        (
            "    unlocks: [approve_plan]\n  - name: complete_implementation",
            "    unlocks: [record_effectiveness]\n  - name: complete_implementation",
            "unlocks 'record_effectiveness', which is not a step with locks:",
        ),
        (
            "    signature: {meaning: Approved for closure, roles: [qa]}",
            "    locks: [verification_evidence]",
            "locks fields but has no signature",
        ),
    ],
)
def test_a_wrong_content_control_is_refused_with_its_line(old, new, message):
    """R-WF-22: a definition using a content control wrongly is refused with file:line."""
    assert BASE.count(old) == 1
    text = BASE.replace(old, new)
    line = text[: text.index(new)].count("\n") + 1
    with pytest.raises(DefinitionError) as exc:
        load_text(text, origin="capa.yaml", known_workflows={"deviation": None, "change_request": None})
    found = [p for p in exc.value.problems if message in p.message]
    assert found and found[0].line == line, exc.value.problems


# --------------------------------------------------------------------------- control 5

QUARTERLY = """
schedules:
  access_review_quarterly:
    job: access_review
    cron: "0 6 1 1,4,7,10 *"
    period: quarter
    params:
      systems:
        - {name: QMS, owner: sam}
"""


@pytest.fixture
def reviewers(people, make_user):
    return {
        **people,
        "sam": make_user("sam", "system_owner", "employee", full_name="Sam System-Owner"),
        "ivy": make_user("ivy", "isms", "employee", full_name="Ivy ISMS"),
    }


def test_generated_grants_are_fixed_and_own_rows_go_to_a_second_reviewer(engine, reviewers):
    """R-WF-23 R-A11-12-3 R-P11-10d-1: the scheduler's grant list of this QMS cannot lose or
    gain rows or have a user or role rewritten (422 population_fixed, nothing written); the
    system owner cannot decide the rows about himself: they go to a second reviewer, and QA,
    who holds a grant in the list, can sign the review off, so the QMS's own review closes."""
    from workflow.errors import GuardFailed, PopulationFixed, SegregationOfDuties
    from workflow.scheduling.jobs import default_jobs
    from workflow.scheduling.schedules import load_schedules_text
    from workflow.scheduling.service import run_due

    jobs = default_jobs()
    run_due(engine, load_schedules_text(QUARTERLY, jobs=jobs), jobs=jobs)
    number = "AR-2026-0001"
    rows = engine.get(number).data["grants"]
    assert {"user": "sam", "role": "system_owner"} in rows
    assert {"user": "quinn", "role": "qa"} in rows
    keep = [{**g, "decision": "keep"} if g["user"] != "sam" else g for g in rows]
    before = snapshot(engine, number)
    refused = {
        "without sam's rows": [g for g in keep if g["user"] != "sam"],
        "with an extra row": [*keep, {"user": "emma", "role": "qa", "decision": "keep"}],
        "with a role rewritten": [{**g, "role": "employee"} if g["user"] == "olga" else g for g in keep],
        "sam deciding his own row": [{**g, "decision": "keep"} for g in rows],
    }
    messages = {}
    for why, grants in refused.items():
        with pytest.raises(PopulationFixed) as exc:
            engine.fire(number, "attest_own_access_pending", "sam", {"grants": grants}, signature=sign("sam"))
        messages[why] = exc.value.message
    assert snapshot(engine, number) == before
    n, without = len(rows), len(refused["without sam's rows"])
    assert messages["without sam's rows"] == (
        f"User access grants is a population the system generated ({n} rows): rows cannot "
        f"be added or removed by hand (this change has {without})."
    )
    assert (
        "Role / access profile was generated by the system and cannot be changed; only "
        "Decision, Comment can." in messages["with a role rewritten"]
    )
    assert "is about you (sam): another reviewer decides it" in messages["sam deciding his own row"]
    with pytest.raises(GuardFailed, match="rows about your own access"):
        engine.fire(number, "attest_no_revocations", "sam", {"grants": keep}, signature=sign("sam"))
    r = engine.fire(number, "attest_own_access_pending", "sam", {"grants": keep}, signature=sign("sam"))
    assert r.state == "second_review"
    with pytest.raises(SegregationOfDuties):
        engine.fire(
            number,
            "second_attest_no_revocations",
            "sam",
            {"grants": [{**g, "decision": "keep"} for g in keep]},
            signature=sign("sam"),
        )
    r = engine.fire(
        number,
        "second_attest_no_revocations",
        "ivy",
        {"grants": [{**g, "decision": "keep"} for g in keep]},
        signature=sign("ivy"),
    )
    assert r.state == "sign_off"
    with pytest.raises(SegregationOfDuties):
        engine.fire(number, "sign_off", "ivy", signature=sign("ivy"))
    r = engine.fire(number, "sign_off", "quinn", {"sign_off_comments": "Complete."}, signature=sign("quinn"))
    assert (r.state, engine.get(number).outcome) == ("closed", "done")


def test_audit_trail_review_rows_are_fixed(engine, people):
    """R-WF-23 R-A11-9-2: the records an audit-trail review lists cannot be rewritten; only
    the attestation and comment columns are QA's to fill."""
    from workflow.errors import PopulationFixed

    row = {"record": "CAPA-2026-0001", "workflow": "capa", "events": 7}
    r = engine.start(
        "audit_trail_review",
        people["qa"],
        {
            "title": "ATR",
            "period": "2026-02",
            "window_from": "2026-02-01T00:00:00+00:00",
            "window_to": "2026-03-01T00:00:00+00:00",
            "records": [row],
            "records_listed": 1,
        },
    )
    with pytest.raises(PopulationFixed, match="Audit events was generated by the system"):
        engine.fire(
            r.number,
            "sign_review",
            people["qa2"],
            {"records": [{**row, "events": 3, "decision": "no_finding"}]},
            signature=sign(people["qa2"]),
        )
    r = engine.fire(
        r.number,
        "sign_review",
        people["qa2"],
        {"records": [{**row, "decision": "no_finding"}]},
        signature=sign(people["qa2"]),
    )
    assert r.state == "closed"


AR = (DEFAULT_DEFINITIONS_DIR / "access_review.yaml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    subject: user\n", "    subject: role\n", "subject: column 'role' must be of type user"),
        (
            "    generated: true\n",
            "    generated: false\n",
            "editable: names the columns of a generated list",
        ),
        (
            "    editable: [decision, comment]",
            "    editable: [decision, verdict]",
            "'grants' has no column 'verdict'",
        ),
        (
            "  title: {type: string, label: Title, max_length: 200}",
            "  title: {type: string, label: Title, max_length: 200, generated: true}",
            "generated: only applies to type: list",
        ),
    ],
)
def test_a_wrong_list_control_is_refused_with_its_line(old, new, message):
    """R-WF-22: list controls used wrongly are refused with file:line."""
    assert AR.count(old) == 1
    text = AR.replace(old, new)
    with pytest.raises(DefinitionError) as exc:
        load_text(text, origin="access_review.yaml")
    found = [p for p in exc.value.problems if message in p.message]
    assert found and found[0].file == "access_review.yaml" and found[0].line > 1, exc.value.problems
