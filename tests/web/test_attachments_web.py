"""Attachments through the web UI (issue 17 item 2): a file chosen in the step's form is
stored and attached; downloads are attachments, never inline, for people who may see the
record; refused files change nothing."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from tests.integration.test_attachments import PDF, PNG
from tests.web.conftest import PASSWORD, csrf, login
from workflow.db.models import AuditEvent
from workflow.signatures.part11 import PasswordSignature

ACTIONS = [{"description": "Second-person label check", "responsible": "olga",
            "due": "2026-04-30"}]


@pytest.fixture
def staff(account, tmp_path, monkeypatch):
    monkeypatch.setenv("QMS_ATTACHMENT_DIR", str(tmp_path / "files"))
    return {"emp": account("emma", "employee"), "qa": account("quinn", "qa", "employee"),
            "owner": account("olga", "capa_owner", "employee"), "ivy": account("ivy", "isms")}


def at_implementation(engine) -> str:
    n = engine.start("capa", "emma", {"title": "Label mix-up", "description": "QC"}).number
    engine.fire(n, "assign", "quinn", {"owner": "olga"})
    engine.fire(n, "submit_root_cause", "olga", {"root_cause_category": "method",
                                                 "root_cause": "No label check."})
    engine.fire(n, "submit_plan", "olga", {"actions": ACTIONS,
                                           "effectiveness_criteria": "No mix-ups"})
    engine.fire(n, "approve_plan", "quinn", signature=PasswordSignature("quinn", PASSWORD, None))
    return n


def post_implementation(client, engine, n: str, upload: tuple[bytes, str] | None):
    path = f"/records/{n}/do/complete_implementation"
    page = client.get(path).get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page and 'type="file"' in page
    form = {"csrf_token": csrf(client, path), "expected_version": engine.get(n).version,
            "implementation_summary": "Check added to SOP-12.",
            "actions-0-description": ACTIONS[0]["description"],
            "actions-0-responsible": "olga", "actions-0-due": "2026-04-30",
            "actions-0-done": "yes"}
    if upload is not None:
        form["implementation_evidence"] = (io.BytesIO(upload[0]), upload[1])
    return client.post(path, data=form, content_type="multipart/form-data")


def files(tmp_path) -> list:
    root = tmp_path / "files"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_attach_in_the_form_then_download_as_an_attachment(app, client, engine, staff,
                                                           tmp_path):
    """R-WF-30 R-WF-31: the owner attaches a PDF in "Complete implementation"; the record
    page links it with its type, size and SHA-256; the download is the same bytes, sent as
    an attachment with nosniff and a CSP that allows nothing, and audited with the person."""
    n = at_implementation(engine)
    login(client, "olga")
    r = post_implementation(client, engine, n, (PDF, "SOP 12 evidence.pdf"))
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    value = engine.get(n).data["implementation_evidence"]
    assert value["name"] == "SOP 12 evidence.pdf" and value["type"] == "application/pdf"
    page = client.get(f"/records/{n}").get_data(as_text=True)
    href = f"/records/{n}/files/{value['sha256']}"
    assert href in page and "SOP 12 evidence.pdf" in page and value["sha256"][:12] in page

    qa = app.test_client()
    login(qa, "quinn")
    with qa.get(href) as r:
        assert r.status_code == 200 and r.data == PDF
        assert r.headers["Content-Disposition"].startswith("attachment;")
        assert 'filename="SOP 12 evidence.pdf"' in r.headers["Content-Disposition"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'; sandbox")
        assert r.mimetype == "application/pdf"
    with engine.reader() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "attachment_downloaded")
                       ).scalar_one()
    assert (ev.actor_name, ev.changes["number"]) == ("Quinn Tester", n)


def test_another_persons_record_attachment_is_404(app, client, engine, staff):
    """R-WF-31 R-P11-10d-2: someone who may not see the record gets 404 for its file (and
    for a made-up hash), exactly as for a record that does not exist."""
    n = at_implementation(engine)
    login(client, "olga")
    assert post_implementation(client, engine, n, (PNG, "photo.png")).status_code == 302
    sha = engine.get(n).data["implementation_evidence"]["sha256"]
    ivy = app.test_client()
    login(ivy, "ivy")
    assert ivy.get(f"/records/{n}/files/{sha}").status_code == 404
    assert client.get(f"/records/{n}/files/{'0' * 64}").status_code == 404
    assert client.get(f"/records/{n}/files/not-a-hash").status_code == 404
    with engine.reader() as s:
        assert s.execute(select(AuditEvent).where(
            AuditEvent.action == "attachment_downloaded")).first() is None


def test_wrong_type_or_oversize_upload_is_refused_on_the_form_and_nothing_changes(
        client, engine, staff, tmp_path, monkeypatch):
    """R-WF-30: a program renamed .pdf and a file over the limit come back on the form with
    the reason; the record does not move and no file is stored."""
    n = at_implementation(engine)
    login(client, "olga")
    before = engine.get(n).version
    r = post_implementation(client, engine, n, (b"MZ\x90\x00" + b"\x00" * 400, "report.pdf"))
    assert r.status_code == 422
    assert re.search(r"report\.pdf is application/vnd\.microsoft\.portable-executable \(read "
                     r"from its content, not its name\)", r.get_data(as_text=True))
    monkeypatch.setenv("QMS_ATTACHMENT_MAX_BYTES", "64")
    r = post_implementation(client, engine, n, (PDF, "big.pdf"))
    assert r.status_code == 422 and "files up to 64 bytes" in r.get_data(as_text=True)
    rec = engine.get(n)
    assert rec.version == before and rec.state == "implementation"
    assert files(tmp_path) == []


def test_api_download_and_a_damaged_file_on_the_page_and_the_api(app, client, engine, staff,
                                                                 tmp_path):
    """R-WF-31 R-WF-32: GET /api/v1/records/{n}/files/{sha256} hands the file to a token
    whose user may see the record (404 otherwise); once the stored bytes are changed the
    record page says "Integrity check failed", QA's "Verified" shows superseded, and both
    the page and the API refuse the file (409 attachment_damaged)."""
    from tests.web.test_api import call, token
    from workflow import blobs

    n = at_implementation(engine)
    login(client, "olga")
    assert post_implementation(client, engine, n, (PNG, "photo.png")).status_code == 302
    engine.fire(n, "verify", "quinn", {"verification_evidence": "seen"},
                signature=PasswordSignature("quinn", PASSWORD, None))
    sha = engine.get(n).data["implementation_evidence"]["sha256"]
    r = call(client, "GET", f"/records/{n}/files/{sha}", token(engine, "quinn", "read"))
    assert r.status_code == 200 and r.data == PNG and r.mimetype == "image/png"
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert r.headers["X-QMS-SHA256"] == sha
    r = call(client, "GET", f"/records/{n}/files/{sha}", token(engine, "ivy", "read"))
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"

    path = blobs.LocalBlobStore(tmp_path / "files").path(sha)
    path.chmod(0o640)
    path.write_bytes(PNG + b"tampered")
    page = client.get(f"/records/{n}").get_data(as_text=True)
    assert "Integrity check failed:" in page and "no longer matches its SHA-256" in page
    sigs = page[page.index("<h2>Signatures</h2>"):]
    assert re.search(r'sig-superseded">\s*<div class="sig-meaning">Verified', sigs)
    assert client.get(f"/records/{n}/files/{sha}").status_code == 409
    r = call(client, "GET", f"/records/{n}/files/{sha}", token(engine, "quinn", "read"))
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "attachment_damaged"


def test_api_upload_then_attach_in_a_step(client, engine, staff, tmp_path):
    """R-WF-30: POST /api/v1/files takes the file as the body, reads its type from the
    content, stores it and answers its file value (201); the value then goes into a step's
    data. A wrong type is 415 and a missing name 400, storing nothing; without the write
    scope 403."""
    from tests.web.test_api import call, token

    n = at_implementation(engine)
    tok = token(engine, "olga", "read", "write")
    r = client.post("/api/v1/files?name=evidence%20%C5%81%C3%B3d%C5%BA.pdf", data=PDF,
                    headers={"Authorization": f"Bearer {tok}",
                             "Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.get_json()
    value = r.get_json()["file"]
    assert value["name"] == "evidence Łódź.pdf" and value["type"] == "application/pdf"
    actions = [{**a, "done": True} for a in engine.get(n).data["actions"]]
    r = call(client, "POST", f"/records/{n}/transitions/complete_implementation", tok,
             {"expected_version": engine.get(n).version,
              "data": {"implementation_summary": "Done.", "actions": actions,
                       "implementation_evidence": value}})
    assert r.status_code == 200, r.get_json()
    assert engine.get(n).data["implementation_evidence"] == value
    stored = len(files(tmp_path))
    r = client.post("/api/v1/files?name=x.pdf", data=b"MZ\x90\x00" + b"\x00" * 99,
                    headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 415 and r.get_json()["error"]["code"] == "attachment_type_refused"
    r = client.post("/api/v1/files", data=PDF, headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 400
    r = client.post("/api/v1/files?name=a.pdf", data=PDF,
                    headers={"Authorization": f"Bearer {token(engine, 'olga', 'read')}"})
    assert r.status_code == 403
    assert len(files(tmp_path)) == stored
