"""Change control drives controlled documents (issue 19 item 2): a change request references
the document versions in force it revises (references, not strings); its implementation
creates their next draft versions; it cannot close until those versions are effective and the
training records of them are closed (waits_for with states and via). Runs on SQLite and, with
QMS_TEST_DATABASE_URL, on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.factories import sign
from tests.integration import test_change_request as cr_tests
from tests.integration import test_controlled_documents as doc_tests
from workflow import clock
from workflow.db import records
from workflow.engine import lifecycle
from workflow.errors import GuardFailed, LinkedRecordsOpen, ValidationFailed
from workflow.identity import users as identity
from workflow.queries import documents

store = doc_tests.store  # the fixtures, shared
co = cr_tests.co


@pytest.fixture
def crew(make_user, people):
    """The document people beside the change request's ``people`` (QA shared)."""
    return {"author": make_user("dora", "document_owner", "employee", full_name="Dora Doc"),
            "rev": make_user("rita", "reviewer", "employee", full_name="Rita Reviewer"),
            "qa": people["qa"], "qa2": people["qa2"], "emp": people["emp"]}


def effective_v1(engine, crew, number="SOP-QA-001") -> str:
    n = doc_tests.new_version(engine, crew, number=number)
    doc_tests.to_approval(engine, crew, n, doc_tests.upload(
        engine, crew["author"], f"{number}.pdf", doc_tests.PDF + number.encode()))
    doc_tests.approve(engine, crew, n, doc_tests.day(20))
    clock.set(clock.now() + timedelta(days=21))
    engine.run_due_timers()
    assert engine.get(n).state == "effective"
    return n


def change_at_approval(engine, people, co, rows, **extra):
    r = cr_tests.draft(engine, people)
    engine.fire(r.number, "submit", people["emp"], {
        "justification": "CAPA-2026-0001 action 1", "change_type": "document", "owner": co})
    return engine.fire(r.number, "submit_for_approval", co, {
        "classification": "major", "quality_impact": "Clearer escalation.",
        "regulatory_impact": "none", "validation_impact": "none",
        "training_impact": "read_and_understood", "implementation_plan": "Revise the SOP.",
        "target_date": (clock.now() + timedelta(days=40)).date().isoformat(),
        "controlled_documents": rows, **extra})


def training_for(engine, version_number: str, trainee: str, qa: str) -> str:
    """A training assignment spawned by the document version (what the training matrix
    creates on approval: link spawned_by, parent = the version)."""
    with engine.unit() as s:
        ctx = engine.context(s)
        parent = records.lock(s, version_number)
        compiled = engine.registry.latest(s, "training_assignment")
        rec = lifecycle.create(ctx, compiled, identity.get_user(s, qa), {
            "title": f"Training: {parent.data['doc_number']} v{parent.data['version']}",
            "document": parent.data["doc_number"],
            "document_version": str(parent.data["version"]), "trainee": trainee,
            "due_date": (clock.now() + timedelta(days=10)).date().isoformat()}, parent=parent)
        return rec.number


def test_change_creates_the_drafts_and_waits_for_effective_and_trained(
        engine, people, crew, co, make_user, store):
    """R-DOC-14 R-WF-15: the change names the version in force; implementation creates draft
    version 2 (number, title, type, owner copied; the row holds the draft's number); QA
    cannot close the change while version 2 is not effective, nor while a training record of
    version 2 is open; then it closes."""
    v1 = effective_v1(engine, crew)
    trainer = make_user("tina", "trainer", "employee", full_name="Tina Trainer")
    r = change_at_approval(engine, people, co, [{"document": v1, "change": "Add escalation."}])
    assert r.state == "approval"
    r = cr_tests.approve_both(engine, people, r.number)
    assert r.state == "implementation"
    [v2] = [n for n in r.created if n.startswith("DOC-")]
    d2 = engine.get(v2)
    assert d2.state == "draft" and d2.data["doc_number"] == "SOP-QA-001"
    assert d2.data["version"] == 2 and d2.data["title"] == "Deviation handling"
    assert d2.data["owner"] == crew["author"] and d2.data["change_request"] == r.number
    assert "Add escalation." in d2.data["change_summary"]
    assert engine.get(r.number).data["controlled_documents"][0]["draft"] == v2

    engine.fire(r.number, "complete_implementation_no_training", co,
                {"implementation_summary": "SOP-QA-001 v2 drafted and approved."})
    assert engine.get(r.number).state == "verification"
    with pytest.raises(LinkedRecordsOpen) as info:
        engine.fire(r.number, "verify", people["qa2"], {"verification_evidence": "ok"},
                    signature=sign(people["qa2"]))
    assert info.value.open_records == [v2] and "effective or superseded" in info.value.message

    engine.fire(v2, "submit_for_review", crew["author"], {
        "file": doc_tests.upload(engine, crew["author"], "v2.pdf", doc_tests.PDF + b"v2"),
        "reviewers": [crew["rev"]]})
    engine.fire(v2, "complete_review", crew["rev"], signature=sign(crew["rev"]))
    doc_tests.approve(engine, crew, v2, doc_tests.day(20))
    trn = training_for(engine, v2, people["emp"], people["qa"])
    clock.set(clock.now() + timedelta(days=21))
    engine.run_due_timers()
    assert engine.get(v2).state == "effective" and engine.get(v1).state == "superseded"
    with pytest.raises(LinkedRecordsOpen) as info:
        engine.fire(r.number, "verify", people["qa2"], {"verification_evidence": "ok"},
                    signature=sign(people["qa2"]))
    assert info.value.open_records == [trn]
    engine.fire(trn, "complete", people["emp"], signature=sign(people["emp"]))
    engine.fire(trn, "verify", trainer, signature=sign(trainer))
    done = engine.fire(r.number, "verify", people["qa2"], {"verification_evidence": "v2 in force"},
                       signature=sign(people["qa2"]))
    assert done.state == "closed"
    with engine.reader() as s:
        assert documents.effective_version(s, "SOP-QA-001").record_number == v2


def test_document_rows_are_references_and_complete(engine, people, crew, co, store):
    """R-DOC-14: a row naming a record that is not a controlled document, a row without what
    changes, or a document listed twice is refused before approval, nothing written."""
    v1 = effective_v1(engine, crew)
    capa = engine.start("capa", people["emp"], {"title": "x", "description": "y"}).number
    with pytest.raises(ValidationFailed, match="no controlled_document record"):
        change_at_approval(engine, people, co, [{"document": capa, "change": "x"}])
    with pytest.raises(GuardFailed, match="needs the document"):
        change_at_approval(engine, people, co, [{"document": v1}])
    with pytest.raises(GuardFailed, match="listed twice"):
        change_at_approval(engine, people, co, [{"document": v1, "change": "a"},
                                                {"document": v1, "change": "b"}])


def test_a_change_without_documents_still_closes_without_waiting(engine, people, co):
    """R-DOC-14: a change without controlled documents and without training impact goes from
    implementation to closed as before (nothing to wait for)."""
    r = cr_tests.draft(engine, people)
    r = cr_tests.to_approval(engine, people, co, r.number, training_impact="none")
    cr_tests.approve_both(engine, people, r.number)
    engine.fire(r.number, "complete_implementation_no_training", co,
                {"implementation_summary": "Done."})
    done = engine.fire(r.number, "verify", people["qa2"], {"verification_evidence": "ok"},
                       signature=sign(people["qa2"]))
    assert done.state == "closed"
