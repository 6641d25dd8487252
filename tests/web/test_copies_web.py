"""True copies from the record page and the API (issue 17 item 3): signed, audited with the
person's name, only for people who may see the record, sent as downloads."""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile

import pypdf
import pytest
from sqlalchemy import select

from tests.web.conftest import login
from tests.web.test_api import DEV, call, token
from workflow import config
from workflow.db.models import AuditEvent
from workflow.keyring import verify_ed25519
from workflow.queries import copies
from workflow.signatures.keys import FileKeyProvider, key_provider


@pytest.fixture
def org(account) -> dict[str, str]:
    # the anchor key that signs copies is created by `qms init` (here: by hand, once)
    FileKeyProvider(config.settings()).create("anchor")
    account("emma", "employee")
    account("ivy", "isms")  # no role of the deviation workflow: sees no deviation
    account("quinn", "qa", "employee")
    return {}


def _exports(engine) -> list[AuditEvent]:
    with engine.reader() as s:
        return list(s.execute(select(AuditEvent).where(AuditEvent.action == "record_exported")
                              .order_by(AuditEvent.id)).scalars())


def _anchor_public():
    anchor = key_provider(config.settings()).anchor_keys()
    return [anchor.public_key(anchor.current_id)]


def _download_headers_ok(r) -> None:
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert "sandbox" in r.headers["Content-Security-Policy"]


def test_record_page_offers_copies_and_each_download_is_signed_and_audited_with_the_person(
        client, engine, org, tmp_path):
    """R-P11-10b-1 R-P11-10b-2 R-UI-40: the record page offers the PDF, JSON and ZIP copies; each is
    a signed true copy sent as an attachment; the export event names the person who
    downloaded it (not "system")."""
    n = engine.start("deviation", "emma", {**DEV, "title": "Leak in Łódź 測試"}).number
    login(client, "emma")
    page = client.get(f"/records/{n}").get_data(as_text=True)
    for fmt in ("pdf", "json", "zip"):
        assert f'/records/{n}/copy.{fmt}"' in page
    assert 'print.css" media="print"' in page  # printing shows the record, not the app
    with client.get("/static/print.css") as r:
        css = r.get_data(as_text=True)
    assert ".topbar" in css and ".no-print" in css and "display: none" in css

    r = client.get(f"/records/{n}/copy.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    _download_headers_ok(r)
    assert f'filename="{n}-true-copy.json"' in r.headers["Content-Disposition"]
    doc = json.loads(r.data)
    assert doc["record"]["title"] == "Leak in Łódź 測試"
    path = tmp_path / "copy.json"
    path.write_bytes(r.data)
    info, problems = copies.check_signed(path, _anchor_public())
    assert problems == [] and info["record"] == n

    r = client.get(f"/records/{n}/copy.pdf")
    assert r.status_code == 200 and r.mimetype == "application/pdf" and r.data[:4] == b"%PDF"
    _download_headers_ok(r)
    text = " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(r.data)).pages)
    assert "Leak in Łódź 測試" in " ".join(text.split())
    sig = json.loads(base64.b64decode(r.headers["X-QMS-Copy-Signature"]))
    (tmp_path / "c.pdf").write_bytes(r.data)
    (tmp_path / "c.pdf.sig").write_bytes(json.dumps(sig).encode())
    assert copies.check_signed(tmp_path / "c.pdf", _anchor_public())[1] == []

    r = client.get(f"/records/{n}/copy.zip")
    assert r.status_code == 200 and r.mimetype == "application/zip"
    _download_headers_ok(r)
    with zipfile.ZipFile(io.BytesIO(r.data)) as z:
        assert sorted(z.namelist()) == [f"{n}-true-copy.pdf", f"{n}-true-copy.pdf.sig"]
        z.extractall(tmp_path / "z")
    assert copies.check_signed(tmp_path / "z" / f"{n}-true-copy.pdf", _anchor_public())[1] == []

    events = _exports(engine)
    assert [(e.changes["number"], e.changes["format"], e.actor_name) for e in events] == [
        (n, "json", "Emma Tester"), (n, "pdf", "Emma Tester"), (n, "pdf", "Emma Tester")]
    assert all(e.actor_name != "System" for e in events)


def test_copy_of_a_record_you_may_not_see_is_404_and_not_audited(app, client, engine, org):
    """R-P11-10b-1 R-P11-10d-2: a copy follows the one visibility rule: a
    record (no role of its workflow, no task) is not found, by the page and by the API, and
    no export is recorded; an unknown format is 404 too."""
    n = engine.start("deviation", "emma", DEV).number
    login(client, "ivy")
    for fmt in ("pdf", "json", "zip"):
        assert client.get(f"/records/{n}/copy.{fmt}").status_code == 404
    tok = token(engine, "ivy", "read")
    for fmt in ("pdf", "json"):
        r = call(client, "GET", f"/records/{n}/copy.{fmt}", tok)
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    assert _exports(engine) == []
    emma = app.test_client()
    login(emma, "emma")
    assert emma.get(f"/records/{n}/copy.exe").status_code == 404
    assert _exports(engine) == []


def test_api_copies_are_signed_and_audited_with_the_token_user(client, engine, org):
    """R-P11-10b-1 R-P11-10b-2: GET /api/v1/records/{n}/copy.pdf and copy.json return the
    signed copies as downloads; the export event names the token's user."""
    n = engine.start("deviation", "emma", DEV).number
    tok = token(engine, "quinn", "read")
    r = call(client, "GET", f"/records/{n}/copy.json", tok)
    assert r.status_code == 200 and r.get_json()["signature"]["algorithm"] == "Ed25519"
    _download_headers_ok(r)
    r = call(client, "GET", f"/records/{n}/copy.pdf", tok)
    assert r.status_code == 200 and r.data[:4] == b"%PDF"
    sig = json.loads(base64.b64decode(r.headers["X-QMS-Copy-Signature"]))
    assert any(verify_ed25519(k, r.data, sig["value"]) for k in _anchor_public())
    assert [(e.changes["format"], e.actor_name) for e in _exports(engine)] == [
        ("json", "Quinn Tester"), ("pdf", "Quinn Tester")]
    assert call(client, "GET", f"/records/{n}/copy.pdf").status_code == 401


def test_record_page_flags_a_field_changed_after_first_entry(client, engine, org, account):
    """R-A11-8-1: the record page (and so its printout) marks a field whose entered value
    was changed later, pointing to the audit entries that changed it."""
    from tests.web.conftest import PASSWORD
    from workflow.signatures.part11 import PasswordSignature

    account("olga", "deviation_owner", "employee")
    account("quentin", "qa", "employee")
    n = engine.start("deviation", "emma", DEV).number
    engine.fire(n, "triage", "quinn", {"classification": "major",
                                       "classification_rationale": "two vials",
                                       "capa_required": True, "investigator": "olga"})
    engine.fire(n, "submit_investigation", "olga", {
        "root_cause_category": "method", "root_cause": "rc", "impact_assessment": "none",
        "batch_disposition": "reject", "capa_required": True})
    engine.fire(n, "approve", "quentin", {"classification": "critical", "capa_required": True},
                signature=PasswordSignature("quentin", PASSWORD, None),
                reason="sterility at risk")
    login(client, "quinn")
    page = client.get(f"/records/{n}").get_data(as_text=True)
    flags = re.findall(r'<p class="changed-flag">.*?</p>', page, re.S)
    assert len(flags) == 1, flags
    with engine.reader() as s:
        seq = s.execute(select(AuditEvent.seq).where(
            AuditEvent.action == "update", AuditEvent.transition == "approve")).scalar_one()
    assert re.search(r"Changed after first entry: see audit\s*<a href=\"/records/"
                     + n + rf"/audit\">#{seq}</a>", flags[0]), flags[0]
    assert page.index("Classification") < page.index('class="changed-flag"')
