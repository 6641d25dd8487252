"""The training matrix pages (issue 19): the matrix with its filters and figures, one
document's trainees, the CSV export, and "My training" listing what the person's roles
require. Documents are records of the small test workflow of
tests/integration/test_training_matrix.py (declaring the ``document`` capability)."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from tests.factories import sign
from tests.integration.test_training_matrix import DOC, curriculum, doc_version
from tests.web.conftest import csrf, login
from workflow.db.models import Record
from workflow.identity import users as identity
from workflow.signatures.mac import VouchingVerifier
from workflow.spec.load import load_text


def _org(engine, account):
    account("tina", "training_coordinator", "trainer", "employee")
    account("trent", "trainer", "employee")
    account("quinn", "qa", "employee")
    account("carl", "capa_owner", "employee")
    account("emma", "employee")
    with engine.unit() as s:
        engine.registry.publish(s, load_text(DOC, "test_doc.yaml"), identity.system_user(s))
    verifier, engine.verifier = engine.verifier, VouchingVerifier()
    try:
        doc_version(engine, "SOP-CAPA-001", 1, effective_in=0)
        curriculum(engine, "capa_owner", ("SOP-CAPA-001", "read_and_understood"))
        curriculum(engine, "qa", ("SOP-CAPA-001", "assessment"))
        with engine.reader() as s:
            carl = s.execute(select(Record.number).where(
                Record.workflow_key == "training_assignment")).scalars().all()
        carl_n = next(n for n in carl if engine.get(n).data["trainee"] == "carl")
        engine.fire(carl_n, "complete", "carl", signature=sign("carl"))
        engine.fire(carl_n, "verify", "trent", signature=sign("trent"))
    finally:
        engine.verifier = verifier


def test_matrix_page_export_and_document_page(client, account, engine):
    """R-TRN-14 R-TRN-15: QA sees people x documents with each cell's status, the compliance
    by role and by document with drill-down links, and exports the matrix as CSV; the
    document page lists who is and is not trained on the effective version; an employee
    without a training role is refused the matrix."""
    _org(engine, account)
    login(client, "quinn")
    page = client.get("/training/matrix").get_data(as_text=True)
    assert "Training matrix" in page and "SOP-CAPA-001" in page
    assert "tm tm-current" in page and "tm tm-due" in page
    assert "Compliance: 1 of 2 required trainings current" in page
    assert '/training/matrix?role=capa_owner' in page
    due = client.get("/training/matrix?status=due").get_data(as_text=True)
    assert "quinn" in due and "carl</span>" not in due
    r = client.get("/training/matrix.csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    assert rows[0][:3] == ["username", "full_name", "roles"]
    status = {(row[0], row[3]): row[6] for row in rows[1:]}
    assert status[("carl", "SOP-CAPA-001")] == "current"
    assert status[("quinn", "SOP-CAPA-001")] == "due"
    assert status[("emma", "SOP-CAPA-001")] == "not_required"
    doc = client.get("/training/documents/SOP-CAPA-001").get_data(as_text=True)
    assert "Effective version 1" in doc
    not_yet = doc[doc.index('id="h-not"'):doc.index('id="h-yes"')]
    trained = doc[doc.index('id="h-yes"'):doc.index('id="h-versions"')]
    assert "quinn" in not_yet and "carl" not in not_yet
    assert "carl" in trained and "quinn" not in trained
    assert client.get("/training/documents/SOP-NOPE").status_code == 404
    client.post("/logout", data={"csrf_token": csrf(client, "/training")})
    login(client, "emma")
    assert client.get("/training/matrix").status_code == 403


def test_my_training_lists_what_my_roles_require(client, account, engine):
    """R-TRN-14: "My training" shows the documents the person's roles require, with the
    effective version and their status."""
    _org(engine, account)
    login(client, "quinn")
    page = client.get("/training").get_data(as_text=True)
    assert "Required by your roles" in page
    assert 'data-status="due"' in page and "Assessment" in page
    client.post("/logout", data={"csrf_token": csrf(client, "/training")})
    login(client, "carl")
    page = client.get("/training").get_data(as_text=True)
    assert 'data-status="current"' in page
