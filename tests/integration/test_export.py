"""True copies (workflow/queries/copies.py, ``qms export``): complete, checkable, audited."""

from __future__ import annotations

import copy
import json

import pytest
from sqlalchemy import func, select

from tests.conftest import TEST_KEY
from tests.factories import sign
from workflow.db.models import AuditEvent
from workflow.errors import RecordNotFound
from workflow.identity import users as identity
from workflow.queries import copies
from workflow.queries.copies import check_copy, export_record


def _approved_deviation(engine, people, classification: str, reason: str | None = None) -> str:
    """A deviation triaged as major, investigated and approved by QA with the classification
    given (a different one is a change after first entry, and needs the reason)."""
    day = "2026-03-01"
    d = engine.start("deviation", people["emp"], {
        "title": "Particle", "description": "d", "occurred_on": day, "discovered_on": day,
        "area": "Filling", "immediate_actions": "hold"}).number
    engine.fire(d, "triage", people["qa"], {"classification": "major",
                                            "classification_rationale": "r",
                                            "capa_required": True,
                                            "investigator": people["owner"]})
    with engine.unit() as s:
        olga = identity.get_user(s, people["owner"])
        identity.grant_role(s, olga, "deviation_owner", actor=identity.system_user(s), reason="t")
    engine.fire(d, "submit_investigation", people["owner"], {
        "root_cause_category": "method", "root_cause": "rc", "impact_assessment": "none",
        "batch_disposition": "reject", "capa_required": True})
    engine.fire(d, "approve", people["qa2"], {"classification": classification,
                                              "capa_required": True},
                signature=sign(people["qa2"]), reason=reason)
    return d


def test_json_copy_is_complete_checkable_and_audited(engine, people):
    """R-P11-10b-1 R-P11-10b-2 R-P11-50-1: fields with labels, state history, links, each
    signature's manifestation and the audit trail; hashes re-check; the export is audited."""
    d = _approved_deviation(engine, people, "major")
    with engine.unit() as s:
        doc = export_record(s, engine.registry, d, identity.system_user(s), "json", "inspection")
    doc = json.loads(json.dumps(doc))  # what a file holds
    assert doc["record"]["number"] == d and doc["record"]["state_label"] == "Closed"
    labels = {f["name"]: f["label"] for f in doc["fields"]}
    assert labels["classification"] == "Classification"
    assert [h["to_state"] for h in doc["state_history"]] == [
        "reported", "investigation", "qa_review", "closed"]
    (sig,) = doc["signatures"]
    assert (sig["printed_name"], sig["meaning"]) == ("Quentin QA", "Approved")
    assert sig["signed_at_utc"].endswith("+00:00")
    assert [(x["kind"], x["direction"], x["workflow"]) for x in doc["links"]] == [
        ("spawned_by", "incoming", "capa")]
    assert len(doc["audit_trail"]) == doc["integrity"]["chain_head_seq"]
    assert check_copy(doc, TEST_KEY) == []
    forged = copy.deepcopy(doc)
    forged["audit_trail"][1]["reason"] = "edited"
    assert any("does not match its hash" in p for p in check_copy(forged, TEST_KEY))
    forged = copy.deepcopy(doc)
    forged["fields"][0]["value"] = "changed"
    assert check_copy(forged, TEST_KEY)
    with engine.reader() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "record_exported")
                       ).scalar_one()
    assert ev.changes["number"] == d and ev.reason == "inspection"


def test_pdf_copy_contains_signature_manifestations_and_audit_entries(engine, people):
    """R-P11-10b-1 R-P11-50-1: the PDF copy's text holds each signature's printed
    name, UTC time and meaning, and every audit entry."""
    import io

    import pytest

    pypdf = pytest.importorskip("pypdf")
    from workflow.queries.copies import record_pdf

    n = engine.start("capa", people["emp"], {"title": "Label mix-up", "description": "d"}).number
    engine.fire(n, "cancel", people["qa"], reason="duplicate of another CAPA",
                signature=sign(people["qa"]))
    with engine.unit() as s:
        doc = export_record(s, engine.registry, n, identity.system_user(s), "pdf", "inspection")
    pdf = record_pdf(doc)
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    flat = " ".join(text.split())
    (sig,) = doc["signatures"]
    # times read "2026-03-02 09:00:00" under a "(UTC)" heading (the JSON copy keeps ISO 8601)
    for needle in ("Quinn QA", sig["signed_at_utc"][:19].replace("T", " "), "Cancelled", n,
                   "duplicate of another CAPA"):
        assert needle in flat, needle
    for ev in doc["audit_trail"]:
        assert ev["hash"][:16] in flat.replace(" ", ""), ev["seq"]


def test_export_of_an_unknown_record_is_refused_and_audits_nothing(engine):
    """R-P11-10b-1: asking for the copy of a record that does not exist is a clear refusal,
    and no export is recorded on the system chain."""
    with engine.reader() as s:
        before = s.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    with pytest.raises(RecordNotFound, match="nope-2026-0001 does not exist"):
        copies.export(engine, "nope-2026-0001", "json", "inspection")
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(AuditEvent)).scalar_one() == before


def test_copy_flags_fields_changed_after_first_entry_with_their_audit_entries(engine, people):
    """R-A11-8-1: the JSON and PDF copies, and the record page's read model, flag a field
    whose entered value was changed later, naming the audit entries that changed it; a
    field entered once (or first entered at a later step) is not flagged."""
    import io

    import pypdf

    from workflow.queries import records

    d = _approved_deviation(engine, people, "critical", reason="re-assessed: single unit affected")
    with engine.unit() as s:
        doc = export_record(s, engine.registry, d, identity.system_user(s), "json", "inspection")
        page = records.record_page(s, engine, d, people["qa"])
    changed = {f["name"]: f["changed_after_first_entry"] for f in doc["fields"]}
    (seq,) = [e["seq"] for e in doc["audit_trail"]
              if e["action"] == "update" and "classification" in e["changes"]
              and e["changes"]["classification"][0] == "major"]
    assert changed["classification"] == [seq]
    assert changed["title"] == [] and changed["root_cause"] == []
    assert page.changed == {"classification": [seq]}
    text = " ".join(" ".join(p.extract_text() for p in
                             pypdf.PdfReader(io.BytesIO(copies.record_pdf(doc))).pages).split())
    assert f"changed after first entry: audit #{seq}" in text
    assert text.count("changed after first entry: audit #") == 1
    display = {f["name"]: f["display"] for f in doc["fields"]}
    assert display["classification"] == "Critical"  # the choice label, not the key
    assert display["investigator"] == "Olga Owner (olga)"  # the printed name
