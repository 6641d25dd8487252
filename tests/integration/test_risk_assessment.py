"""Risk assessments (definitions/risk_assessment.yaml): computed scores, treatments with
signatures and linked CAPAs, residual re-assessment."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import TEST_KEY
from tests.factories import sign
from workflow import clock
from workflow.db.models import Record, RecordLink, Signature
from workflow.errors import (
    ContentLocked,
    CredentialsRejected,
    GuardFailed,
    LinkedRecordsOpen,
    SegregationOfDuties,
    ValidationFailed,
)
from workflow.identity import passwords
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.signatures import part11

PW = "Correct-Horse-Battery-9"
POLICY = Policy(totp_required_roles=())

RISKS = [
    {"hazard": "Audit trail can be switched off", "cause": "Admin setting", "effect":
     "Undetected data changes", "severity": 5, "occurrence": 2, "detection": 5},
    {"hazard": "Shared accounts", "cause": "Convenience", "effect": "No attribution",
     "severity": 4, "occurrence": 2, "detection": 2},
]


def open_ra(engine, people, risks=RISKS, **extra):
    return engine.start("risk_assessment", people["emp"], {
        "title": "QMS software", "subject_type": "qms", "scope": "The eQMS itself",
        "owner": people["owner"], "risks": risks, **extra})


def planned(engine, people, planner="owner"):
    r = open_ra(engine, people)
    engine.fire(r.number, "submit", people["emp"])
    rows = engine.get(r.number).data["risks"]
    rows[0].update(treatment="mitigate", mitigation="Remove the setting", due="2026-06-30")
    rows[1].update(treatment="accept", mitigation="Named accounts enforced by policy")
    engine.fire(r.number, "submit_plan", people[planner], {"risks": rows})
    return r.number


def test_scores_and_priority_are_computed_never_taken_from_input(engine, people):
    """R-RSK-2 R-RSK-3: score = S x O x D and the priority class are computed by the engine
    inside the step; a forged score or priority in the input is replaced, not stored."""
    forged = [{**RISKS[1], "score": 1, "priority": "low"}, {**RISKS[0], "score": 999}]
    r = open_ra(engine, people, risks=forged)
    rows = engine.get(r.number).data["risks"]
    assert [(x["score"], x["priority"]) for x in rows] == [(16, "medium"), (50, "high")]
    # likelihood x impact: detection not used, other thresholds
    r2 = open_ra(engine, people, method="likelihood_impact",
                 risks=[{"hazard": "Backup fails", "severity": 5, "occurrence": 3}])
    assert engine.get(r2.number).data["risks"][0] | {} == {
        "hazard": "Backup fails", "severity": 5, "occurrence": 3, "score": 15,
        "priority": "high"}


def test_a_risk_without_scores_is_refused_and_nothing_is_written(engine, people):
    """R-RSK-4: a risk without its scores is refused with a message naming what is missing;
    nothing is written."""
    with engine.reader() as s:
        before = s.execute(select(Record.id)).all()
    with pytest.raises(ValidationFailed, match=r"row 1: Score cannot be computed: give "
                                               r"Occurrence \(1-5\), Detection"):
        open_ra(engine, people, risks=[{"hazard": "No backup", "severity": 4}])
    with engine.reader() as s:
        assert s.execute(select(Record.id)).all() == before
    r = open_ra(engine, people, risks=[])
    with pytest.raises(ValidationFailed, match="Detection"):
        engine.fire(r.number, "submit", people["emp"],
                    {"risks": [{"hazard": "x", "severity": 2, "occurrence": 2}]})
    assert engine.get(r.number).state == "draft"


def test_treatments_signed_capa_created_and_residual_reassessed(engine, people):
    """R-RSK-1 R-RSK-5 R-RSK-6 R-RSK-7 R-RSK-8: a risk assessment with its risks as rows;
    accept is accepted by QA's approval signature,
    mitigate creates a linked CAPA whose number lands in the risk's row; the residual risk
    is re-assessed only once the CAPA is closed; closing is signed by another QA person."""
    number = planned(engine, people, planner="qa")
    with pytest.raises(SegregationOfDuties):  # who planned the treatments does not approve
        engine.fire(number, "approve", people["qa"], signature=sign(people["qa"]))
    r = engine.fire(number, "approve", people["qa2"], signature=sign(people["qa2"]))
    assert r.state == "treatment"
    rows = engine.get(number).data["risks"]
    capa_no = rows[0]["capa"]
    assert capa_no.startswith("CAPA-") and "capa" not in rows[1]
    capa = engine.get(capa_no)
    assert capa.title == "Risk: Audit trail can be switched off"
    assert "high risk (score 50)" in capa.data["description"]
    with engine.reader() as s:
        ra = s.execute(select(Record).where(Record.number == number)).scalar_one()
        assert s.execute(select(RecordLink).where(RecordLink.target_id == ra.id,
                                                  RecordLink.source_id == capa.id)).first()
    rows = engine.get(number).data["risks"]
    rows[0].update(residual_severity=5, residual_occurrence=1, residual_detection=2)
    with pytest.raises(LinkedRecordsOpen, match=capa_no):
        engine.fire(number, "reassess", people["owner"],
                    {"risks": rows, "residual_summary": "Setting removed"})
    with engine.unit() as s:  # the CAPA's own life is tested in test_capa.py
        s.execute(Record.__table__.update().where(Record.number == capa_no)
                  .values(state="closed", outcome="done", closed_at=clock.now()))
    # the signed treatments are locked; only CAPA/change numbers and residual scores change
    forged = [dict(x) for x in rows]
    forged[1]["treatment"] = "mitigate"
    with pytest.raises(ContentLocked, match="Risks"):
        engine.fire(number, "reassess", people["owner"], {"risks": forged,
                                                           "residual_summary": "x"})
    with pytest.raises(GuardFailed, match="residual scores"):
        engine.fire(number, "reassess", people["owner"],
                    {"risks": engine.get(number).data["risks"], "residual_summary": "x"})
    r = engine.fire(number, "reassess", people["owner"],
                    {"risks": rows, "residual_summary": "Setting removed"})
    assert r.state == "residual_review"
    row = engine.get(number).data["risks"][0]
    assert (row["residual_score"], row["residual_priority"]) == (10, "low")
    r = engine.fire(number, "close", people["qa"], signature=sign(people["qa"]))
    assert r.state == "closed"
    with engine.reader() as s:
        sigs = s.execute(select(Signature.meaning, Signature.signer_name)
                         .where(Signature.record_id == ra.id).order_by(Signature.id)).all()
    assert [tuple(x) for x in sigs] == [("Approved", "Quentin QA"), ("Approved", "Quinn QA")]


def test_approval_with_a_wrong_password_is_refused(engine, people):
    """R-RSK-6 R-P11-200-1: the approval that accepts risks needs the approver's password;
    a wrong one is refused and nothing moves, no CAPA is created."""
    number = planned(engine, people)
    engine.verifier = part11.Part11Verifier(TEST_KEY, POLICY)
    with engine.unit() as s:
        u = identity.get_user(s, people["qa"])
        passwords.set_password(s, u, PW, actor=identity.system_user(s), policy=POLICY,
                               reason="test")
        u.must_change_password = False
    before = engine.get(number)
    with pytest.raises(CredentialsRejected):
        engine.fire(number, "approve", people["qa"],
                    signature=part11.PasswordSignature(people["qa"], "wrong-password-1"))
    after = engine.get(number)
    assert (after.state, after.version) == (before.state, before.version)
    with engine.reader() as s:
        assert not s.execute(select(Record).where(Record.workflow_key == "capa")).first()
    r = engine.fire(number, "approve", people["qa"],
                    signature=part11.PasswordSignature(people["qa"], PW))
    assert r.state == "treatment"
