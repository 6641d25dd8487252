"""Controlled documents in the web UI (issue 19): the documents list in the navigation and the
Read view of the effective version with its watermark; printed (print.css) and as PDF copy it
says "Uncontrolled when printed" with the print time; visibility is the one rule."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pypdf
import pytest

from tests.integration.test_attachments import PDF
from tests.web.conftest import PASSWORD, login
from workflow import clock
from workflow.queries import attachments, copies, documents
from workflow.signatures.part11 import PasswordSignature


def sig(user: str) -> PasswordSignature:
    return PasswordSignature(user, PASSWORD, None)


@pytest.fixture
def staff(account, tmp_path, monkeypatch):
    monkeypatch.setenv("QMS_ATTACHMENT_DIR", str(tmp_path / "files"))
    return {"owner": account("dora", "document_owner", "employee"),
            "rev": account("rita", "reviewer", "employee"),
            "qa": account("quinn", "qa", "employee"), "emp": account("emma", "employee"),
            "ivy": account("ivy", "isms")}


def effective(engine, number="SOP-QA-001", version=1, title="Deviation handling",
              go_live=True) -> str:
    n = engine.start("controlled_document", "dora", {
        "title": title, "doc_number": number, "doc_type": "sop", "version": version,
        "owner": "dora"}).number
    f = attachments.upload(engine, "dora", f"{number}.pdf", PDF + number.encode())
    engine.fire(n, "submit_for_review", "dora", {"change_summary": "First issue.", "file": f,
                                                 "reviewers": ["rita"]})
    engine.fire(n, "complete_review", "rita", signature=sig("rita"))
    day = (clock.now() + timedelta(days=15)).date().isoformat()
    engine.fire(n, "approve", "quinn", {"effective_date": day}, signature=sig("quinn"))
    engine.fire(n, "approve", "dora", signature=sig("dora"))
    if go_live:
        clock.set(clock.now() + timedelta(days=16))
        engine.run_due_timers()
    return n


def test_documents_list_and_read_view_with_watermark(client, engine, staff):
    """R-DOC-11 R-DOC-12: the list (number, title, type, effective version, newest version,
    next review) is in the navigation; the Read view shows the effective version's metadata,
    file (download link) and approvals under the watermark "Controlled copy, effective version
    N", and a print-only notice "Uncontrolled when printed" with the print time."""
    n = effective(engine)
    effective(engine, "POL-IS-001", title="Information security policy", go_live=False)
    login(client, "emma")
    home = client.get("/").get_data(as_text=True)
    assert 'href="/documents/"' in home
    page = client.get("/documents/").get_data(as_text=True)
    assert "SOP-QA-001" in page and "Deviation handling" in page and "Version 1" in page
    assert "POL-IS-001" in page and "none in force" in page and "Approved (training period)" \
        in page
    r = client.get("/documents/SOP-QA-001")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "Controlled copy, effective version 1" in html
    assert "Uncontrolled when printed" in html and "data-print-time" in html
    assert "print_time.js" in html and "print.css" in html
    assert f"/records/{n}/files/" in html and "SOP-QA-001.pdf" in html
    assert "Approved</strong> by Quinn" in html and "Reviewed</strong> by Rita" in html
    assert "Dora" in html  # the owner's printed name
    css = (Path(__file__).parents[2] / "webapp" / "static" / "print.css").read_text()
    assert ".uncontrolled-print { display: block !important" in css
    assert ".controlled-watermark, .controlled-banner { display: none !important; }" in css


def test_read_view_is_404_without_a_version_in_force_or_visibility(app, client, engine, staff):
    """R-DOC-11 R-P11-10d-2: no version in force, an unknown number, or a viewer who may not
    see the document (no role of its workflow): 404, the same answer."""
    effective(engine, go_live=False)
    login(client, "emma")
    assert client.get("/documents/SOP-QA-001").status_code == 404
    assert client.get("/documents/NOPE-1").status_code == 404
    clock.set(clock.now() + timedelta(days=16))
    engine.run_due_timers()
    client = app.test_client()  # the first session ended while the clock moved on
    login(client, "emma")
    assert client.get("/documents/SOP-QA-001").status_code == 200
    client = app.test_client()
    login(client, "ivy")
    assert client.get("/documents/SOP-QA-001").status_code == 404
    assert "SOP-QA-001" not in client.get("/documents/").get_data(as_text=True)


def test_pdf_copy_of_a_version_says_uncontrolled_when_printed(client, engine, staff):
    """R-DOC-11: the true copy of a document version carries "Uncontrolled when printed" and
    whether the version was in force when copied; the PDF prints it on every page."""
    n = effective(engine)
    with engine.reader() as s:
        doc = copies.record_copy(s, engine.registry, engine.get(n, session=s))
        assert documents.effective_version(s, "SOP-QA-001").record_number == n
    assert doc["controlled_document"] == {"number": "SOP-QA-001", "version": 1,
                                          "in_force": True,
                                          "notice": "Uncontrolled when printed"}
    login(client, "emma")
    r = client.get(f"/records/{n}/copy.pdf")
    assert r.status_code == 200 and r.data.startswith(b"%PDF")
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(r.data)).pages)
    assert "UNCONTROLLED WHEN PRINTED" in text and "Uncontrolled when printed. Printed" in text
