"""Audits and findings (issue 21 item 1): the audit programme opens its audits on their
planned dates, an audit's findings close through effective CAPAs, the audit closes only when
every finding is closed, nobody audits their own area, and bad input changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import TEST_KEY
from tests.factories import give_training
from workflow import clock
from workflow.db.models import AuditEvent, Record, RecordLink, Signature
from workflow.errors import (
    CredentialsRejected,
    GuardFailed,
    LinkedRecordsOpen,
    NotAuthorized,
    SegregationOfDuties,
    ValidationFailed,
)
from workflow.identity import passwords, profile
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.identity.users import SYSTEM_USERNAME
from workflow.queries import attachments
from workflow.signatures.part11 import Part11Verifier, PasswordSignature

PW = "Audit-Programme-Pass-42"
POLICY = Policy(min_length=12, history=5, max_age_days=0, lockout_threshold=5,
                idle_minutes=15, session_hours=12, totp_required_roles=())


def sig(username: str, password: str = PW) -> PasswordSignature:
    return PasswordSignature(username, password)


@pytest.fixture
def org(engine, make_user):
    """Auditors in QA and IT, an auditee in Production, QA reviewers; real passwords."""
    engine.verifier = Part11Verifier(TEST_KEY, POLICY)
    people = {
        "lead": ("alice", ("auditor", "employee"), "Quality Assurance"),
        "aud2": ("ivan", ("auditor", "employee"), "IT"),
        "prod_auditor": ("pete", ("auditor", "employee"), "Production"),
        "auditee": ("paula", ("employee", "capa_owner"), "Production"),
        "qa": ("quinn", ("qa", "employee"), "Quality Assurance"),
        "qa2": ("quentin", ("qa", "employee"), "Quality Control"),
    }
    for username, roles, dept in people.values():
        make_user(username, *roles)
        with engine.unit() as s:
            u = identity.get_user(s, username)
            passwords.set_password(s, u, PW, actor=identity.system_user(s), policy=POLICY,
                                   reason="test")
            u.must_change_password = False
        profile.update_profile(engine, username, actor=SYSTEM_USERNAME, department=dept,
                               reason="organisation chart")
    return {k: v[0] for k, v in people.items()}


def new_audit(engine, org, **extra):
    data = {"title": "Internal audit: Production", "audit_type": "internal",
            "scope": "Batch record review and line clearance", "auditee_area": "Production",
            "standard": "EU GMP Chapter 1 / ICH Q10", "lead_auditor": org["lead"],
            "planned_start": "2026-03-10", "planned_end": "2026-03-11", **extra}
    return engine.start("audit", org["qa"], data)


def to_conduct(engine, org, number):
    engine.fire(number, "open_preparation", org["lead"])
    return engine.fire(number, "start_conduct", org["lead"], {
        "audit_plan": "Opening meeting, BR review of 10 batches, line walk, closing meeting",
        "audit_team": [{"auditor": org["aud2"], "role": "Data integrity"}]})


FINDINGS = [
    {"title": "Line clearance not second-person verified", "classification": "major",
     "requirement": "EU GMP Chapter 5", "clause": "5.35",
     "description": "3 of 10 batch records lack the second signature on line clearance.",
     "evidence": "BR 26-014, 26-017, 26-021", "response_due": "2026-04-15"},
    {"title": "Logbook index out of date", "classification": "observation",
     "requirement": "ICH Q10", "clause": "3.2.1",
     "description": "The equipment logbook index lists a retired mixer.",
     "evidence": "Logbook LB-7, page 1"},
]


def findings_of(engine, number):
    with engine.reader() as s:
        audit = s.execute(select(Record).where(Record.number == number)).scalar_one()
        return s.execute(
            select(Record).join(RecordLink, RecordLink.source_id == Record.id)
            .where(RecordLink.target_id == audit.id, RecordLink.kind == "spawned_by",
                   Record.workflow_key == "audit_finding").order_by(Record.id)).scalars().all()


def close_capa(engine, org, capa):
    """Walk a CAPA to closed effective (QA and the CAPA owner)."""
    engine.fire(capa, "assign", org["qa"], {"owner": org["auditee"]})
    engine.fire(capa, "submit_root_cause", org["auditee"], {
        "root_cause_category": "method", "root_cause": "SOP allows a single signature."})
    engine.fire(capa, "submit_plan", org["auditee"], {
        "actions": [{"description": "Revise SOP-PRD-12", "responsible": org["auditee"],
                     "due": "2026-05-01"}],
        "effectiveness_criteria": "No single-signed clearances in 3 months"})
    engine.fire(capa, "approve_plan", org["qa"], signature=sig(org["qa"]))
    acts = [{**a, "done": True} for a in engine.get(capa).data["actions"]]
    engine.fire(capa, "complete_implementation", org["auditee"],
                {"actions": acts, "implementation_summary": "SOP revised, operators trained."})
    engine.fire(capa, "verify", org["qa"], {"verification_evidence": "SOP-PRD-12 v5"},
                signature=sig(org["qa"]))
    clock.set(clock.now() + timedelta(days=91))
    engine.fire(capa, "record_effectiveness", org["qa"], {
        "effectiveness_result": "effective", "effectiveness_evidence": "0 in 90 days"})
    # closing a CAPA requires training on the CAPA SOP (R-TRN-13): given the engine's way,
    # its signatures vouched for by the test (training is tested apart)
    real = engine.verifier
    engine.verifier = Part11Verifier(TEST_KEY, POLICY, allow_vouched=True)
    try:
        give_training(engine, org["qa2"])
    finally:
        engine.verifier = real
    return engine.fire(capa, "close", org["qa2"], signature=sig(org["qa2"]))


def test_audit_findings_close_through_capas_and_the_audit_waits_for_them(engine, org):
    """R-AUD-2 R-AUD-3 R-AUD-4 R-AUD-5 R-AUD-6 R-AUD-7 R-AUD-8: an internal audit is
    prepared, conducted and reported (signed by the lead auditor; a wrong password is
    refused); each finding becomes its own record; a major finding closes only through its
    CAPA closed effective, an observation on an accepted response; the audit closes (signed
    by QA) only when every finding is closed."""
    a = new_audit(engine, org)
    assert (a.number, a.state) == ("AUD-2026-0001", "planned")
    to_conduct(engine, org, a.number)
    findings = [{**f, "auditee": org["auditee"]} for f in FINDINGS]
    r = engine.fire(a.number, "complete_conduct", org["lead"], {
        "conduct_summary": "10 batch records and the filling line examined.",
        "findings": findings})
    assert r.state == "reporting"
    major, obs = findings_of(engine, a.number)
    assert (major.number, major.state, major.data["classification"]) == (
        "AF-2026-0001", "response", "major")
    assert major.data["audit"] == a.number and major.data["auditor"] == org["lead"]
    assert major.data["requirement"] == "EU GMP Chapter 5" and major.data["clause"] == "5.35"

    # the report is signed by the lead auditor, with their own password
    report = {"report_summary": "Two findings; line clearance needs a CAPA.",
              "conclusion": "conforming_with_findings"}
    with pytest.raises(CredentialsRejected):
        engine.fire(a.number, "issue_report", org["lead"], report,
                    signature=sig(org["lead"], "not-the-password"))
    with pytest.raises(GuardFailed, match="signed by the lead auditor"):
        engine.fire(a.number, "issue_report", org["aud2"], report, signature=sig(org["aud2"]))
    assert engine.get(a.number).state == "reporting"
    r = engine.fire(a.number, "issue_report", org["lead"], report, signature=sig(org["lead"]))
    assert r.state == "follow_up"

    # the audit waits for its findings
    with pytest.raises(LinkedRecordsOpen, match="AF-2026-0001") as exc:
        engine.fire(a.number, "close", org["qa2"], {"closure_notes": "done"},
                    signature=sig(org["qa2"]))
    assert set(exc.value.open_records) == {major.number, obs.number}

    # the observation: answered, accepted and closed with the auditor's signature
    engine.fire(obs.number, "respond", org["auditee"], {"response": "Index updated."})
    with pytest.raises(NotAuthorized):  # the auditee does not accept their own response
        engine.fire(obs.number, "accept_and_close", org["auditee"],
                    {"response_review": "ok", "closure_evidence": "x"}, signature=sig("paula"))
    r = engine.fire(obs.number, "accept_and_close", org["lead"], {
        "response_review": "Accepted.", "closure_evidence": "LB-7 index v2 seen."},
        signature=sig(org["lead"]))
    assert r.state == "closed"

    # the major finding needs a CAPA
    with pytest.raises(GuardFailed, match="needs a CAPA"):
        engine.fire(major.number, "respond", org["auditee"], {"response": "Will retrain."})
    engine.fire(major.number, "respond", org["auditee"], {
        "response": "SOP allows one signature; revise SOP and retrain.", "capa_required": True})
    r = engine.fire(major.number, "accept_with_capa", org["lead"],
                    {"response_review": "Root cause plausible; CAPA raised."})
    assert r.state == "corrective_action" and len(r.created) == 1
    capa = r.created[0]
    c = engine.get(capa)
    assert c.data["source"] == "audit" and c.data["owner"] == org["auditee"]
    assert major.number in c.title

    # the finding waits for its CAPA to be closed effective
    with pytest.raises(LinkedRecordsOpen, match=capa):
        engine.fire(major.number, "close", org["lead"], {"closure_evidence": "CAPA open"},
                    signature=sig(org["lead"]))
    with pytest.raises(LinkedRecordsOpen):
        engine.fire(a.number, "close", org["qa2"], {"closure_notes": "done"},
                    signature=sig(org["qa2"]))
    assert close_capa(engine, org, capa).state == "closed"
    r = engine.fire(major.number, "close", org["lead"],
                    {"closure_evidence": f"{capa} closed effective"}, signature=sig(org["lead"]))
    assert r.state == "closed"

    # the lead auditor may not close the audit (independent QA closure, signed)
    with pytest.raises(NotAuthorized):
        engine.fire(a.number, "close", org["lead"], {"closure_notes": "done"},
                    signature=sig(org["lead"]))
    r = engine.fire(a.number, "close", org["qa2"], {"closure_notes": "Both findings closed."},
                    signature=sig(org["qa2"]))
    assert r.state == "closed"
    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == a.number)).scalar_one()
        sigs = s.execute(select(Signature.meaning, Signature.signer_name)
                         .where(Signature.record_id == rec.id).order_by(Signature.id)).all()
    assert [tuple(x) for x in sigs] == [
        ("Audit report approved by the lead auditor", "Alice Tester"),
        ("Audit closed", "Quentin Tester")]


def test_programme_opens_its_audits_on_their_planned_dates(engine, org):
    """R-AUD-1 R-AUD-9: an approved (signed) programme creates one audit per planned row,
    each waiting in "planned" until the scheduler opens its preparation at the start of its
    planned start date (the clock is moved, nothing sleeps)."""
    rows = [
        {"audit_type": "internal", "scope": "Production batch records", "auditee_area":
         "Production", "standard": "EU GMP Chapter 4", "lead_auditor": org["lead"],
         "planned_start": "2026-04-14", "planned_end": "2026-04-15"},
        {"audit_type": "supplier", "scope": "Hosting provider ISMS", "supplier": "CloudCo",
         "standard": "ISO/IEC 27001:2022", "lead_auditor": org["aud2"],
         "planned_start": "2026-06-01"},
    ]
    p = engine.start("audit_programme", org["qa"], {"title": "Audit programme 2026",
                                                    "year": 2026, "planned_audits": rows})
    engine.fire(p.number, "submit", org["qa"])
    with pytest.raises(SegregationOfDuties):  # not approved by who drafted it
        engine.fire(p.number, "approve", org["qa"], signature=sig(org["qa"]))
    with pytest.raises(CredentialsRejected):
        engine.fire(p.number, "approve", org["qa2"], signature=sig(org["qa2"], "wrong-one"))
    r = engine.fire(p.number, "approve", org["qa2"], signature=sig(org["qa2"]))
    assert r.state == "active" and len(r.created) == 2
    internal, supplier = (engine.get(n) for n in r.created)
    assert (internal.state, internal.title) == ("planned", "Internal audit: Production")
    assert (supplier.title, supplier.data["supplier"]) == ("Supplier audit: CloudCo", "CloudCo")
    assert internal.data["programme"] == p.number

    clock.set(datetime(2026, 4, 13, 23, 59, tzinfo=UTC))
    assert engine.run_due_timers() == []
    clock.set(datetime(2026, 4, 14, 0, 1, tzinfo=UTC))
    out = engine.run_due_timers()
    assert out == [f"{internal.number}: open_preparation -> preparation"]
    assert engine.get(internal.number).state == "preparation"
    assert engine.get(supplier.number).state == "planned"
    # the programme closes only when every audit it created is closed
    with pytest.raises(LinkedRecordsOpen):
        engine.fire(p.number, "close", org["qa"], {"closure_summary": "done"})

    # a rescheduled audit opens on its new date
    engine.fire(supplier.number, "reschedule", org["qa"], {"planned_start": "2026-07-01"},
                reason="supplier asked")
    clock.set(datetime(2026, 6, 2, tzinfo=UTC))
    assert engine.run_due_timers() == []
    clock.set(datetime(2026, 7, 1, 8, tzinfo=UTC))
    assert engine.run_due_timers() == [f"{supplier.number}: open_preparation -> preparation"]


def test_auditor_may_not_audit_their_own_area(engine, org):
    """R-AUD-10: a lead auditor, team member or actor from the auditee area is refused with
    a message naming the rule; nothing is written."""
    a = new_audit(engine, org, lead_auditor=org["prod_auditor"])
    engine.fire(a.number, "open_preparation", org["qa"])
    before = engine.get(a.number).version
    plan = {"audit_plan": "Line walk"}
    # the lead auditor acting in their own area
    with pytest.raises(SegregationOfDuties, match="you belong to Production") as exc:
        engine.fire(a.number, "start_conduct", org["prod_auditor"], plan)
    assert exc.value.rule == "not_in_area:auditee_area"
    # QA names them (as lead auditor, or in the team): refused too
    with pytest.raises(SegregationOfDuties, match=r"Pete Tester \(pete\), named as Lead "
                       r"auditor .* belongs to Production"):
        engine.fire(a.number, "start_conduct", org["qa"], plan)
    with pytest.raises(SegregationOfDuties, match="named as Audit team"):
        engine.fire(a.number, "start_conduct", org["qa"], {
            **plan, "lead_auditor": org["lead"],
            "audit_team": [{"auditor": org["prod_auditor"]}]}, reason="new lead")
    assert engine.get(a.number).version == before
    # the area is compared trimmed and regardless of case
    profile.update_profile(engine, org["lead"], actor=SYSTEM_USERNAME,
                           department="  production ", reason="moved")
    with pytest.raises(SegregationOfDuties):
        engine.fire(a.number, "start_conduct", org["qa"], {**plan, "lead_auditor": org["lead"]},
                    reason="new lead")
    r = engine.fire(a.number, "start_conduct", org["qa"], {**plan, "lead_auditor": org["aud2"]},
                    reason="new lead")
    assert r.state == "conduct"
    # a supplier audit has no auditee area: the rule holds nobody back
    s = new_audit(engine, org, audit_type="supplier", supplier="CloudCo", auditee_area=None,
                  lead_auditor=org["prod_auditor"])
    engine.fire(s.number, "open_preparation", org["qa"])
    assert engine.fire(s.number, "start_conduct", org["prod_auditor"], plan).state == "conduct"


def test_department_is_set_by_an_administrator_not_by_the_person(engine, org):
    """R-AUD-11: nobody moves themselves out of an area; an administrator's change is
    audited on the system chain."""
    with pytest.raises(NotAuthorized, match="set by an administrator"):
        profile.update_profile(engine, org["prod_auditor"], actor=org["prod_auditor"],
                               department="IT")
    with engine.reader() as s:
        assert identity.get_user(s, org["prod_auditor"]).department == "Production"
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "profile_changed")
                       .order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
        assert ev.changes["department"] == [None, "Quality Control"]


def test_bad_findings_are_refused_and_nothing_is_written(engine, org):
    """R-AUD-12: a finding without classification or requirement is refused with a clear
    message, on the audit and when raised directly; nothing is written."""
    a = new_audit(engine, org)
    to_conduct(engine, org, a.number)
    version = engine.get(a.number).version
    with engine.reader() as s:
        count = s.execute(select(func.count()).select_from(Record)).scalar_one()
    for missing, message in (("classification", "needs a title and a classification"),
                             ("requirement", "needs the requirement")):
        bad = [{**FINDINGS[0], "auditee": org["auditee"], missing: None}]
        with pytest.raises(GuardFailed, match=message):
            engine.fire(a.number, "complete_conduct", org["lead"],
                        {"conduct_summary": "x", "findings": bad})
    with pytest.raises(ValidationFailed) as exc:
        engine.fire(a.number, "complete_conduct", org["lead"], {
            "conduct_summary": "x",
            "findings": [{**FINDINGS[0], "auditee": org["auditee"],
                          "classification": "serious"}]})
    assert "findings" in exc.value.errors
    with pytest.raises(ValidationFailed) as exc:
        engine.start("audit_finding", org["lead"], {
            "title": "Raised directly", "audit": a.number, "description": "x",
            "auditor": org["lead"], "auditee": org["auditee"]})
    assert set(exc.value.errors) == {"classification", "requirement"}
    with pytest.raises(GuardFailed, match="names the auditee area"):
        new_audit(engine, org, auditee_area=None)
    assert engine.get(a.number).version == version
    assert engine.get(a.number).state == "conduct"
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Record)).scalar_one() == count


def test_repeat_finding_links_the_earlier_finding(engine, org):
    """R-AUD-13: a finding may name an earlier finding it repeats; it is linked as a
    recurrence (the repeat-findings KPI counts these)."""
    a = new_audit(engine, org)
    to_conduct(engine, org, a.number)
    engine.fire(a.number, "complete_conduct", org["lead"], {
        "conduct_summary": "x", "findings": [{**FINDINGS[1], "auditee": org["auditee"]}]})
    first = findings_of(engine, a.number)[0]
    b = new_audit(engine, org, planned_start="2026-09-01", planned_end="2026-09-02")
    to_conduct(engine, org, b.number)
    engine.fire(b.number, "complete_conduct", org["lead"], {
        "conduct_summary": "x", "findings": [{**FINDINGS[1], "auditee": org["auditee"],
                                              "repeat_of": first.number}]})
    again = findings_of(engine, b.number)[0]
    assert again.data["repeat_of"] == first.number
    with engine.reader() as s:
        kinds = s.execute(select(RecordLink.kind).where(
            RecordLink.source_id == again.id, RecordLink.target_id == first.id)).scalars().all()
    assert kinds == ["recurrence_of"]


def test_the_auditor_attaches_evidence_files_to_a_finding(engine, org, tmp_path, monkeypatch):
    """R-AUD-15: a finding's evidence takes an uploaded file, attached by an auditor (not
    the auditee) before the response; the file is recorded in the finding's trail."""
    monkeypatch.setenv("QMS_ATTACHMENT_DIR", str(tmp_path / "files"))
    a = new_audit(engine, org)
    to_conduct(engine, org, a.number)
    engine.fire(a.number, "complete_conduct", org["lead"], {
        "conduct_summary": "x", "findings": [{**FINDINGS[0], "auditee": org["auditee"]}]})
    (f,) = findings_of(engine, a.number)
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360000002000001e221bc3300000000"
                        "49454e44ae426082")
    value = attachments.upload(engine, org["lead"], "BR 26-014 p3.png", png,
                               field="evidence_file", number=f.number)
    with pytest.raises(NotAuthorized):
        engine.fire(f.number, "attach_evidence", org["auditee"], {"evidence_file": value})
    r = engine.fire(f.number, "attach_evidence", org["lead"], {"evidence_file": value})
    assert r.state == "response"
    assert engine.get(f.number).data["evidence_file"]["name"] == "BR 26-014 p3.png"
    with engine.reader() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.record_id == f.id,
                                                AuditEvent.action == "update")
                       .order_by(AuditEvent.seq.desc()).limit(1)).scalar_one()
    assert ev.changes["evidence_file"][1]["sha256"] == value["sha256"]
    # the auditee still has the response task
    engine.fire(f.number, "respond", org["auditee"], {"response": "r", "capa_required": True})
