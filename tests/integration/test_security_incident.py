"""Security incidents end to end (ISO/IEC 27001 A.5.24-A.5.28, EU GMP Annex 11 §13): report
by anyone -> ISMS triage -> containment -> eradication and recovery -> signed post-incident
review (QA signs too only when GxP data was affected) -> closed, with the linked CAPA or
deviation raised automatically, the 72-hour notification clock for personal data, and bad
input refused with nothing written."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import TEST_KEY
from workflow import clock
from workflow.db.models import AuditEvent, Record, RecordLink, Signature, Task, TaskStatus
from workflow.errors import (
    CredentialsRejected,
    GuardFailed,
    NotAuthorized,
    SignatureRequired,
    ValidationFailed,
)
from workflow.identity import passwords
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.signatures.part11 import Part11Verifier, PasswordSignature

PW = "Correct-Horse-Battery-9"
POLICY = Policy(min_length=12, history=5, max_age_days=90, lockout_threshold=5,
                idle_minutes=15, session_hours=12, totp_required_roles=())


@pytest.fixture
def org(engine, make_user):
    """Reporter, ISMS (incident manager), a handler, QA; everyone has a password and the
    engine checks real Part 11 signatures (password), so a wrong password is refused."""
    names = {"emp": make_user("emma", "employee"), "isms": make_user("ivy", "isms", "employee"),
             "handler": make_user("hank", "employee"), "qa": make_user("quinn", "qa", "employee")}
    with engine.unit() as s:
        for username in names.values():
            u = identity.get_user(s, username)
            passwords.set_password(s, u, PW, actor=identity.system_user(s), policy=POLICY,
                                   reason="test")
            u.must_change_password = False
    engine.verifier = Part11Verifier(TEST_KEY, POLICY)
    return names


def pw(username: str, password: str = PW) -> PasswordSignature:
    return PasswordSignature(username=username, password=password)


@pytest.fixture
def system(engine, org):
    """An inventory entry (SYS-...) the incidents name as affected."""
    return engine.start("system_inventory", org["isms"], {"title": "LIMS"}).number


def row(s, number):
    return s.execute(select(Record).where(Record.number == number)).scalar_one()


def report(engine, org, **extra):
    return engine.start("security_incident", org["emp"], {
        "title": "Phishing mail opened, password entered on a fake login page",
        "description": "Clicked a link in a mail 'invoice overdue' and typed my password.",
        **extra})


def triage(engine, org, number, system, **extra):
    occurred = (clock.now() - timedelta(hours=5)).isoformat()
    data = {"severity": "high", "category": "account_compromise", "affected_systems": [system],
            "gxp_data_affected": False, "personal_data_affected": False,
            "occurred_at": occurred, "aware_at": clock.now().isoformat(),
            "handler": org["handler"], "triage_rationale": "Credentials of a LIMS user.",
            **extra}
    return engine.fire(number, "triage", org["isms"], data)


def to_review(engine, org, number, **extra):
    engine.fire(number, "contained", org["handler"],
                {"containment_actions": "Account locked, sessions ended, mail purged.",
                 "evidence_collected": "Mail headers and proxy logs kept in the case folder."})
    return engine.fire(number, "recovered", org["handler"], {
        "eradication_actions": "Password reset, MFA enforced, phishing domain blocked.",
        "recovery_actions": "Account re-enabled after identity check.", **extra})


REVIEW = {"root_cause": "No MFA on the LIMS web login.",
          "lessons_learned": "MFA for every externally reachable login; phishing drill."}


def children(s, number, workflow):
    parent = row(s, number)
    # a linked record the incident raised: linked to it as spawned_by (source = the child)
    return s.execute(select(Record).join(RecordLink, RecordLink.source_id == Record.id).where(
        RecordLink.target_id == parent.id, RecordLink.kind == "spawned_by",
        Record.workflow_key == workflow)).scalars().all()


def test_high_severity_incident_report_to_closure_with_linked_capa(engine, org, system):
    """R-INC-1 R-INC-2 R-INC-3 R-INC-5 R-INC-6 R-INC-7 R-ISO-524 R-ISO-525 R-ISO-526 R-ISO-527
    R-ISO-528 R-A11-13-1: anyone reports with a title and a description; ISMS triages (severity,
    category, affected inventory systems, handler); a high-severity incident raises a CAPA
    linked to it; the handler contains and recovers; ISMS signs the post-incident review with
    a password (a wrong one is refused and changes nothing); QA is not needed without GxP data
    and a QA-only person cannot sign it."""
    r = report(engine, org)
    assert (r.number, r.state) == ("INC-2026-0001", "reported")
    with engine.reader() as s:
        inc = row(s, r.number)
        t = s.execute(select(Task).where(Task.record_id == inc.id)).scalar_one()
        assert (t.role, t.status, t.due_at) == ("isms", TaskStatus.OPEN,
                                                clock.now() + timedelta(days=1))
    with pytest.raises(NotAuthorized):  # triage is ISMS's
        engine.fire(r.number, "triage", org["emp"], {"severity": "low"})

    clock.set(clock.now() + timedelta(hours=2))
    r = triage(engine, org, r.number, system)
    assert r.state == "containment"
    with engine.reader() as s:
        capa = children(s, r.number, "capa")
        assert len(capa) == 1 and capa[0].data["source"] == "security_incident"
        assert capa[0].title.startswith(f"Security incident {r.number}: Phishing")
        assert children(s, r.number, "deviation") == []
        assert children(s, r.number, "breach_notification") == []
        inc = row(s, r.number)
        assert "notification_due" not in inc.data
        # the affected system is linked to the incident (the inventory entry lists it)
        sys_row = row(s, system)
        assert s.execute(select(RecordLink.kind).where(
            RecordLink.source_id == inc.id, RecordLink.target_id == sys_row.id)).scalar_one() \
            == "related"
    r = to_review(engine, org, r.number)
    assert r.state == "review"

    with pytest.raises(SignatureRequired):
        engine.fire(r.number, "close", org["isms"], REVIEW)
    with engine.reader() as s:
        before = (row(s, r.number).version, s.execute(
            select(func.count()).select_from(AuditEvent).where(
                AuditEvent.record_id == row(s, r.number).id)).scalar_one())
    with pytest.raises(CredentialsRejected):
        engine.fire(r.number, "close", org["isms"], REVIEW, signature=pw(org["isms"], "wrong-Pass-123"))
    with engine.reader() as s:
        inc = row(s, r.number)
        assert inc.state == "review"
        assert (inc.version, s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.record_id == inc.id)).scalar_one()) == before
        assert s.execute(select(Signature).where(Signature.record_id == inc.id)).first() is None
    # without GxP data, QA is not a signer of this review: not offered to QA, and refused
    (opt,) = [o for o in engine.step_options(r.number, org["qa"]) if o.transition.name == "close"]
    assert not opt.offered and "signed by Information Security (ISMS) here" in opt.refused
    assert [o.offered for o in engine.step_options(r.number, org["isms"])
            if o.transition.name == "close"] == [True]
    with pytest.raises(NotAuthorized, match="isms"):
        engine.fire(r.number, "close", org["qa"], REVIEW, signature=pw(org["qa"]))
    done = engine.fire(r.number, "close", org["isms"], REVIEW, signature=pw(org["isms"]))
    assert (done.moved, done.state) == (True, "closed")
    with engine.reader() as s:
        inc = row(s, r.number)
        sigs = s.execute(select(Signature).where(Signature.record_id == inc.id)).scalars().all()
        assert [(x.signer_username, x.meaning, x.signer_role, x.method) for x in sigs] == [
            (org["isms"], "Post-incident review approved", "isms", "password")]
        assert inc.outcome == "done"
        assert inc.data["evidence_collected"].startswith("Mail headers")


def test_isms_dismisses_a_false_positive_with_a_signed_reason(engine, org):
    """R-INC-12 R-ISO-525: a report that is no incident is dismissed by ISMS with a reason
    and a signature; without the reason it is refused."""
    r = report(engine, org)
    with pytest.raises(ValidationFailed, match="triage_rationale"):
        engine.fire(r.number, "dismiss", org["isms"], {}, signature=pw(org["isms"]),
                    reason="duplicate")
    done = engine.fire(r.number, "dismiss", org["isms"],
                       {"triage_rationale": "Simulated phishing mail of the awareness campaign."},
                       signature=pw(org["isms"]), reason="not an incident")
    assert done.state == "dismissed"
    with engine.reader() as s:
        assert row(s, r.number).outcome == "void"


def test_gxp_incident_raises_deviation_and_needs_qa_signature_too(engine, org, system):
    """R-INC-4 R-INC-6 R-INC-10 R-A11-13-1: GxP data affected raises a linked deviation (not a
    second CAPA: the deviation's own rules raise it) and tells QA; the post-incident review
    then needs ISMS's AND QA's signatures: ISMS alone leaves it in review."""
    r = report(engine, org, occurred_at="2026-03-02T01:00:00+00:00",
               reporter_actions="Pulled the network cable of the CDS workstation.")
    triage(engine, org, r.number, system, severity="critical", category="malware",
           gxp_data_affected=True, occurred_at="2026-03-02T01:00:00+00:00")
    with engine.reader() as s:
        dev = children(s, r.number, "deviation")
        assert len(dev) == 1
        assert dev[0].data["occurred_on"] == "2026-03-02" and dev[0].data["area"] == \
            "Information security"
        assert dev[0].data["equipment"] == system
        assert dev[0].data["immediate_actions"].startswith("Pulled the network cable")
        assert children(s, r.number, "capa") == []
    with pytest.raises(GuardFailed, match="integrity"):
        to_review(engine, org, r.number)
    r = engine.fire(r.number, "recovered", org["handler"], {
        "eradication_actions": "Reimaged.", "recovery_actions": "Restored from backup.",
        "data_integrity_verified": True})
    assert r.state == "review"
    assert [o.offered for o in engine.step_options(r.number, org["qa"])
            if o.transition.name == "close"] == [True]  # with GxP data QA signs too
    first = engine.fire(r.number, "close", org["isms"], REVIEW, signature=pw(org["isms"]))
    assert (first.moved, first.state, first.signatures_needed) == (False, "review", 1)
    done = engine.fire(r.number, "close", org["qa"], {}, signature=pw(org["qa"]))
    assert (done.moved, done.state) == (True, "closed")
    with engine.reader() as s:
        roles = [x.signer_role for x in s.execute(select(Signature).where(
            Signature.record_id == row(s, r.number).id)).scalars()]
        assert roles == ["isms", "qa"]


def test_personal_data_starts_the_72_hour_notification_clock(engine, org, system):
    """R-INC-8 R-INC-9: personal data affected sets the authority notification due 72 hours
    after awareness on the incident and raises a linked breach notification whose ISMS task
    is due then (so the SLA sweep reminds and escalates); a notification after the deadline
    needs the reasons for the delay."""
    aware = clock.now() - timedelta(hours=3)
    r = report(engine, org)
    triage(engine, org, r.number, system, severity="medium", personal_data_affected=True,
           aware_at=aware.isoformat())
    due = aware + timedelta(hours=72)
    with engine.reader() as s:
        assert datetime.fromisoformat(row(s, r.number).data["notification_due"]) == due
        (brn,) = children(s, r.number, "breach_notification")
        assert brn.data["incident_number"] == r.number
        task = s.execute(select(Task).where(Task.record_id == brn.id)).scalar_one()
        assert (task.role, task.due_at) == ("isms", due)
        number = brn.number
    clock.set(due + timedelta(hours=1))
    late = {"authority": "State data protection authority", "notified_at": clock.now().isoformat(),
            "data_subjects_informed": False}
    with pytest.raises(GuardFailed, match="72 hours"):
        engine.fire(number, "notify_authority", org["isms"], late, signature=pw(org["isms"]))
    done = engine.fire(number, "notify_authority", org["isms"],
                       {**late, "rationale": "Forensics confirmed the scope only on day 4."},
                       signature=pw(org["isms"]))
    assert done.state == "notified"


@pytest.mark.parametrize("missing", ["affected_systems", "severity"])
def test_incident_without_affected_systems_or_severity_cannot_leave_triage(
        engine, org, system, missing):
    """R-INC-11: triage without affected systems or without severity is refused with a
    message naming the field; the incident stays in triage and nothing is written."""
    r = report(engine, org)
    with engine.reader() as s:
        before = row(s, r.number).version
        n = s.execute(select(func.count()).select_from(Record)).scalar_one()
    extra = {"affected_systems": []} if missing == "affected_systems" else {"severity": None}
    with pytest.raises(ValidationFailed) as exc:
        triage(engine, org, r.number, system, **extra)
    assert missing in exc.value.errors and "required" in exc.value.errors[missing]
    with engine.reader() as s:
        inc = row(s, r.number)
        assert (inc.state, inc.version) == ("reported", before)
        assert s.execute(select(func.count()).select_from(Record)).scalar_one() == n
    # an affected system that is not in the inventory is refused too
    with pytest.raises(ValidationFailed, match="affected_systems"):
        triage(engine, org, r.number, system, affected_systems=["SYS-2026-0999"])
    with engine.reader() as s:
        assert row(s, r.number).state == "reported"
