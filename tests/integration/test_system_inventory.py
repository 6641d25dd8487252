"""The computerised-system inventory (Annex 11 §4.3, ISO 27001 A.5.9): an entry registered,
approved by QA (signed), changed only by a signed step with a reason, periodically reviewed
(signed) and retired; this QMS registered as the first entry by ``qms init``."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import TEST_KEY
from tests.factories import sign
from tests.integration.test_identity import POLICY, PW
from workflow.bootstrap import register_this_system
from workflow.db.models import AuditEvent, Record, Signature
from workflow.errors import (
    CredentialsRejected,
    GuardFailed,
    NotAuthorized,
    ReasonRequired,
    SegregationOfDuties,
    SignatureRequired,
    ValidationFailed,
)
from workflow.identity import passwords
from workflow.identity import users as identity
from workflow.signatures.part11 import Part11Verifier, PasswordSignature

ENTRY = {
    "title": "LabWare LIMS", "description": "Sample management and results of QC testing.",
    "gxp_relevant": True, "part11_applicable": True, "annex11_applicable": True,
    "gamp_category": "cat4_configured", "system_owner": "sam", "process_owner": "paul",
    "supplier": "LabWare Inc.", "hosting": "on_premise", "data_classification": "confidential",
    "validation_status": "validated", "validation_document": "VR-LIMS-2025-004",
    "validation_report_date": "2025-11-20", "next_periodic_review": "2026-11-20",
}


@pytest.fixture
def staff(people, make_user):
    return {**people,
            "sam": make_user("sam", "system_owner", "employee", full_name="Sam System-Owner"),
            "ivy": make_user("ivy", "isms", "employee", full_name="Ivy ISMS")}


def active_entry(engine, data=None):
    r = engine.start("system_inventory", "sam", {"title": (data or ENTRY)["title"]})
    engine.fire(r.number, "submit", "sam", {k: v for k, v in (data or ENTRY).items()
                                            if k != "title"})
    engine.fire(r.number, "approve", "quinn", {"approval_comments": "Complete."},
                signature=sign("quinn"))
    return r.number


def test_entry_registered_approved_and_changed_only_signed_with_a_reason(engine, staff):
    """R-SYS-1 R-SYS-2 R-SYS-3: registered by the system owner, approved by QA (signed, not
    the submitter), then every change of the active entry is a signed step with a reason and
    its audit event keeps the old and new values."""
    r = engine.start("system_inventory", "sam", {"title": "LabWare LIMS"})
    engine.fire(r.number, "submit", "quinn", {k: v for k, v in ENTRY.items() if k != "title"})
    with pytest.raises(NotAuthorized):
        engine.fire(r.number, "approve", "sam", signature=sign("sam"))
    with pytest.raises(SegregationOfDuties):
        engine.fire(r.number, "approve", "quinn", signature=sign("quinn"))
    engine.fire(r.number, "approve", "quentin", signature=sign("quentin"))
    assert engine.get(r.number).state == "active"

    before = engine.get(r.number)
    # no reason: refused, nothing written
    with pytest.raises(ReasonRequired):
        engine.fire(r.number, "change_entry", "sam", {"hosting": "private_cloud"},
                    signature=sign("sam"))
    # no signature: refused, nothing written
    with pytest.raises(SignatureRequired):
        engine.fire(r.number, "change_entry", "sam", {"hosting": "private_cloud"},
                    reason="Moved to the private cloud (CR-2026-0007)")
    after = engine.get(r.number)
    assert (after.version, after.data) == (before.version, before.data)

    res = engine.fire(r.number, "change_entry", "sam", {"hosting": "private_cloud"},
                      signature=sign("sam"), reason="Moved to the private cloud (CR-2026-0007)")
    rec = engine.get(r.number)
    assert (res.state, rec.data["hosting"]) == ("active", "private_cloud")
    with engine.reader() as s:
        ev = s.execute(select(AuditEvent).where(
            AuditEvent.record_id == rec.id, AuditEvent.action == "update")
            .order_by(AuditEvent.seq.desc())).scalars().first()
        assert ev.changes["hosting"] == ["on_premise", "private_cloud"]
        assert ev.reason == "Moved to the private cloud (CR-2026-0007)"
        meanings = [m for (m,) in s.execute(select(Signature.meaning).where(
            Signature.record_id == rec.id).order_by(Signature.id))]
    assert meanings == ["Approved", "Change approved"]


def test_a_change_signed_with_a_wrong_password_is_refused(engine, staff):
    """R-SYS-3 R-P11-200-1: the change is an electronic signature: a wrong password is
    refused and nothing of the change is written."""
    number = active_entry(engine)
    engine.verifier = Part11Verifier(TEST_KEY, POLICY)
    with engine.unit() as s:
        u = identity.get_user(s, "sam")
        passwords.set_password(s, u, PW, actor=identity.system_user(s), policy=POLICY,
                               reason="test")
        u.must_change_password = False
    before = engine.get(number)
    with pytest.raises(CredentialsRejected):
        engine.fire(number, "change_entry", "sam", {"supplier": "LabWare GmbH"},
                    signature=PasswordSignature("sam", "not-my-password"),
                    reason="Supplier's EU entity")
    after = engine.get(number)
    assert (after.version, after.data) == (before.version, before.data)
    engine.fire(number, "change_entry", "sam", {"supplier": "LabWare GmbH"},
                signature=PasswordSignature("sam", PW), reason="Supplier's EU entity")
    assert engine.get(number).data["supplier"] == "LabWare GmbH"


def test_bad_entries_are_refused_with_nothing_written(engine, staff):
    """R-SYS-6: a validated system names its validation report; a GxP system cannot be
    'not required' to be validated; the next review follows the last; missing fields named."""
    r = engine.start("system_inventory", "sam", {"title": "Empower CDS"})
    data = {k: v for k, v in ENTRY.items() if k not in ("title", "validation_document")}
    with pytest.raises(GuardFailed, match="names its validation report"):
        engine.fire(r.number, "submit", "sam", data)
    with pytest.raises(GuardFailed, match="not required"):
        engine.fire(r.number, "submit", "sam", {**data, "validation_status": "not_required"})
    with pytest.raises(GuardFailed, match="after the last"):
        engine.fire(r.number, "submit", "sam", {**data, "validation_status": "in_validation",
                                                "last_periodic_review": "2026-12-01"})
    with pytest.raises(ValidationFailed) as exc:
        engine.fire(r.number, "submit", "sam", {"gamp_category": "cat9"})
    assert "gamp_category" in exc.value.errors
    with pytest.raises(ValidationFailed, match="no validation_report record"):
        engine.fire(r.number, "submit", "sam", {**data, "validation_report": "VAL-2026-0099"})
    rec = engine.get(r.number)
    assert (rec.state, rec.version, rec.data) == ("draft", 1, {"title": "Empower CDS",
                                                               "periodic_review_months": 12,
                                                               "access_review_in_scope": True})


def test_periodic_review_and_retirement_are_signed(engine, staff):
    """R-SYS-4: the periodic review is signed with its conclusion and the next due date;
    retirement is signed by QA (not the system owner) with a reason."""
    number = active_entry(engine)
    with pytest.raises(GuardFailed, match="in the future"):
        engine.fire(number, "record_periodic_review", "sam", {
            "last_periodic_review": "2027-01-01", "next_periodic_review": "2028-01-01",
            "periodic_review_notes": "x"}, signature=sign("sam"))
    engine.fire(number, "record_periodic_review", "sam", {
        "last_periodic_review": "2026-02-27", "next_periodic_review": "2027-02-27",
        "periodic_review_notes": "Still validated; no open deviations."},
        signature=sign("sam"), reason="Periodic review 2026: next review date set")
    assert engine.get(number).data["next_periodic_review"] == "2027-02-27"
    engine.fire(number, "retire", "quinn", {"retirement_notes": "Data migrated to LIMS 8."},
                signature=sign("quinn"), reason="Replaced by LIMS 8")
    assert engine.get(number).state == "retired"


def test_this_qms_is_registered_once_as_the_first_entry(engine, staff):
    """R-SYS-5: `qms init` registers this QMS (QMS_SYSTEM_NAME) in the inventory, as the
    system user, for its owner to complete; running it again adds nothing."""
    number = register_this_system(engine)
    assert number is not None and register_this_system(engine) is None
    rec = engine.get(number)
    assert (rec.state, rec.data["title"]) == ("draft", engine.system_name)
    with engine.reader() as s:
        row = s.execute(select(Record).where(Record.number == number)).scalar_one()
        assert identity.get_user(s, "system").id == row.created_by_id


def test_a_list_of_references_names_several_inventory_entries(engine, staff):
    """R-SYS-7: a list of references (the incident's affected systems) accepts inventory
    entries only - an unknown number or a record of another workflow is refused with the
    field named and nothing written - and links each entry it newly names."""
    from workflow.db.models import RecordLink

    lims, cds = active_entry(engine), active_entry(engine, {**ENTRY, "title": "Empower CDS"})
    inc = engine.start("security_incident", "emma", {
        "title": "Ransomware note on a lab PC", "description": "Files renamed on the share."})
    other = engine.start("capa", "emma", {"title": "T", "description": "D"}).number
    triage = {"severity": "high", "category": "malware", "gxp_data_affected": True,
              "personal_data_affected": False, "occurred_at": "2026-03-02T06:00:00+00:00",
              "aware_at": "2026-03-02T08:00:00+00:00", "handler": "sam",
              "triage_rationale": "Lab PC with LIMS and CDS clients."}
    before = engine.get(inc.number)
    for bad in (["SYS-2026-0999"], [lims, other]):
        with pytest.raises(ValidationFailed) as exc:
            engine.fire(inc.number, "triage", "ivy", {**triage, "affected_systems": bad})
        assert "no system_inventory record" in exc.value.errors["affected_systems"]
    after = engine.get(inc.number)
    assert (after.version, after.state) == (before.version, before.state)
    engine.fire(inc.number, "triage", "ivy", {**triage, "affected_systems": [lims, cds]})
    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == inc.number)).scalar_one()
        targets = sorted(s.execute(select(Record.number).join(
            RecordLink, RecordLink.target_id == Record.id).where(
            RecordLink.source_id == rec.id, RecordLink.kind == "related")).scalars())
    assert targets == sorted([lims, cds])
