"""Controlled documents (issue 19 item 1): one record per version, draft -> review ->
approval (QA and the owner sign) -> approved -> effective on the effective date (timer) ->
superseded / obsolete; the ``document`` capability and its query
(workflow/queries/documents.py). Runs on SQLite and, with QMS_TEST_DATABASE_URL, on
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.conftest import TEST_KEY
from tests.factories import sign
from workflow import blobs, clock
from workflow.audit import integrity
from workflow.db.models import Signature
from workflow.errors import (
    GuardFailed,
    NotYetOpen,
    SignatureRejected,
    WorkflowError,
)
from workflow.identity import passwords
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.queries import attachments, documents
from workflow.signatures.part11 import Part11Verifier, PasswordSignature

PDF = (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n"
       b"%%EOF\n")
PW = "Correct-Horse-Battery-9"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("QMS_ATTACHMENT_DIR", str(tmp_path / "files"))
    return tmp_path / "files"


@pytest.fixture
def crew(make_user):
    return {
        "author": make_user("dora", "document_owner", "employee", full_name="Dora Doc-Owner"),
        "rev": make_user("rita", "reviewer", "employee", full_name="Rita Reviewer"),
        "qa": make_user("quinn", "qa", "employee", full_name="Quinn QA"),
        "qa2": make_user("quentin", "qa", "employee", full_name="Quentin QA"),
        "emp": make_user("emma", "employee", full_name="Emma Employee"),
    }


def upload(engine, who, name="sop.pdf", body=PDF):
    return attachments.upload(engine, who, name, body)


def new_version(engine, crew, version=1, number="SOP-QA-001", doc_type="sop", **extra):
    return engine.start("controlled_document", crew["author"], {
        "title": "Deviation handling", "doc_number": number, "doc_type": doc_type,
        "version": version, "owner": crew["author"], **extra}).number


def to_approval(engine, crew, n, file_value):
    engine.fire(n, "submit_for_review", crew["author"], {
        "change_summary": "First issue.", "file": file_value, "reviewers": [crew["rev"]]})
    engine.fire(n, "complete_review", crew["rev"], {"review_comment": "Fine."},
                signature=sign(crew["rev"]))


def approve(engine, crew, n, effective):
    engine.fire(n, "approve", crew["qa"], {"effective_date": effective},
                signature=sign(crew["qa"]))
    return engine.fire(n, "approve", crew["author"], signature=sign(crew["author"]))


def day(days: int) -> str:
    return (clock.now() + timedelta(days=days)).date().isoformat()


def effective_doc(engine, crew, store, version=1, number="SOP-QA-001", days=20):
    n = new_version(engine, crew, version, number)
    to_approval(engine, crew, n, upload(engine, crew["author"], f"{number}-v{version}.pdf",
                                        PDF + str(version).encode()))
    approve(engine, crew, n, day(days))
    return n


def test_version_goes_from_draft_to_effective_by_the_timer(engine, crew, store):
    """R-DOC-1 R-DOC-2 R-DOC-3 R-DOC-4 R-DOC-5: a version is reviewed (signed "Reviewed"),
    approved by QA and the owner (two signatures, one per role), waits in "approved" for its
    effective date and becomes effective when the timer fires at the start of that day; the
    query finds it as the version in force."""
    n = new_version(engine, crew)
    to_approval(engine, crew, n, upload(engine, crew["author"]))
    first = engine.fire(n, "approve", crew["qa"], {"effective_date": day(20)},
                        signature=sign(crew["qa"]))
    assert not first.moved and first.signatures_needed == 1
    assert engine.fire(n, "approve", crew["author"], signature=sign(crew["author"])).moved
    assert engine.get(n).state == "approved"
    with engine.reader() as s:
        assert documents.effective_version(s, "SOP-QA-001") is None
        sigs = s.execute(select(Signature.meaning, Signature.signer_role)
                         .where(Signature.record_id == engine.get(n).id)).all()
    assert sorted(m for m, _ in sigs) == ["Approved", "Approved", "Reviewed"]
    # QA cannot make it effective early; the timer does it on the day
    with pytest.raises(NotYetOpen, match="not open yet"):
        engine.fire(n, "make_effective", crew["qa"])
    clock.set(clock.now() + timedelta(days=19))
    assert engine.run_due_timers() == []
    clock.set(clock.now() + timedelta(days=1, hours=-8, minutes=1))  # 00:01 on the day
    assert engine.run_due_timers() == [f"{n}: make_effective -> effective"]
    with engine.reader() as s:
        v = documents.effective_version(s, "SOP-QA-001")
        versions = documents.document_versions(s, "SOP-QA-001")
    assert v is not None and v.record_number == n and v.version == 1 and v.in_force
    assert v.doc_type == "sop" and v.effective_date.isoformat() == day(0)
    assert [x.version for x in versions] == [1]


def test_wrong_password_is_refused_and_nothing_signed(engine, crew, store):
    """R-DOC-3 R-P11-200-1: approving needs the signer's own password; a wrong one is refused
    and the version stays in approval without a signature."""
    policy = Policy(min_length=12, totp_required_roles=())
    engine.verifier = Part11Verifier(TEST_KEY, policy)
    with engine.unit() as s:
        for name in (crew["qa"], crew["rev"]):
            passwords.set_password(s, identity.get_user(s, name), PW,
                                   actor=identity.system_user(s), policy=policy, reason="test")
            identity.get_user(s, name).must_change_password = False
    n = new_version(engine, crew)
    engine.fire(n, "submit_for_review", crew["author"], {
        "change_summary": "First issue.", "file": upload(engine, crew["author"]),
        "reviewers": [crew["rev"]]})
    engine.fire(n, "complete_review", crew["rev"],
                signature=PasswordSignature(crew["rev"], PW))
    with pytest.raises(SignatureRejected):
        engine.fire(n, "approve", crew["qa"], {"effective_date": day(20)},
                    signature=PasswordSignature(crew["qa"], "not-the-password-1"))
    rec = engine.get(n)
    assert rec.state == "approval" and "effective_date" not in rec.data
    with engine.reader() as s:
        assert s.execute(select(Signature.meaning).where(Signature.record_id == rec.id)
                         ).scalars().all() == ["Reviewed"]


@pytest.mark.parametrize("days, doc_type, message", [
    (-1, "sop", "cannot be in the past"),
    (10, "sop", "training period"),
    (3, "policy", "training period"),
])
def test_effective_date_refused_at_approval(engine, crew, store, days, doc_type, message):
    """R-DOC-6: an effective date in the past, or one that leaves less than the type's
    training period, is refused at approval with a clear message; nothing is signed."""
    n = new_version(engine, crew, doc_type=doc_type)
    to_approval(engine, crew, n, upload(engine, crew["author"]))
    with pytest.raises(GuardFailed, match=message):
        engine.fire(n, "approve", crew["qa"], {"effective_date": day(days)},
                    signature=sign(crew["qa"]))
    rec = engine.get(n)
    assert rec.state == "approval" and "effective_date" not in rec.data


def test_only_qa_or_the_owner_approve_and_reviewers_are_named(engine, crew, make_user, store):
    """R-DOC-3: a document owner who does not own this version cannot approve it; only a
    reviewer named on the version completes the review; the owner does not review."""
    other_owner = make_user("otto", "document_owner", "employee")
    other_rev = make_user("rob", "reviewer", "employee")
    n = new_version(engine, crew)
    engine.fire(n, "submit_for_review", crew["author"], {
        "change_summary": "First issue.", "file": upload(engine, crew["author"]),
        "reviewers": [crew["rev"]]})
    with pytest.raises(GuardFailed, match="reviewer named"):
        engine.fire(n, "complete_review", other_rev, signature=sign(other_rev))
    engine.fire(n, "complete_review", crew["rev"], signature=sign(crew["rev"]))
    engine.fire(n, "approve", crew["qa"], {"effective_date": day(20)},
                signature=sign(crew["qa"]))
    with pytest.raises(GuardFailed, match="Only QA or the document's owner"):
        engine.fire(n, "approve", other_owner, signature=sign(other_owner))
    with pytest.raises(WorkflowError):  # the same QA cannot fill both roles
        engine.fire(n, "approve", crew["qa"], signature=sign(crew["qa"]))
    assert engine.get(n).state == "approval"


def test_file_replaced_after_approval_refused_and_tampering_detected(engine, crew, store):
    """R-DOC-7 R-WF-32: the approved file is locked by the signatures (a replacement is
    refused, nothing written); bytes replaced in the store behind the application's back are
    named by verify-audit."""
    n = effective_doc(engine, crew, store)
    rec = engine.get(n)
    value = rec.data["file"]
    other = upload(engine, crew["author"], "other.pdf", PDF + b"% other\n")
    with pytest.raises(WorkflowError, match="file"):
        engine.fire(n, "cancel", crew["qa"], {"file": other}, reason="swap")
    assert engine.get(n).data["file"] == value and engine.get(n).version == rec.version
    path = blobs.LocalBlobStore(store).path(value["sha256"])
    path.chmod(0o640)
    path.write_bytes(PDF + b"% tampered\n")
    with engine.reader() as s:
        found = [p for p in integrity.verify(s, engine.signing_key).problems
                 if p.kind == "attachment"]
    assert found and n in found[0].message


def test_retire_needs_a_reason_and_a_qa_signature(engine, crew, store):
    """R-DOC-8: an effective version is retired (obsolete) only with a reason and QA's
    signature; afterwards the document has no version in force."""
    n = effective_doc(engine, crew, store)
    clock.set(clock.now() + timedelta(days=21))
    engine.run_due_timers()
    assert engine.get(n).state == "effective"
    engine.fire(n, "retire", crew["qa"], signature=sign(crew["qa"]),
                reason="Process discontinued")
    assert engine.get(n).state == "obsolete"
    with engine.reader() as s:
        assert documents.effective_version(s, "SOP-QA-001") is None
        assert [v.state for v in documents.document_versions(s, "SOP-QA-001")] == ["obsolete"]
