"""The definitions pages: read-only for everyone with the diagram, the draft editor for
process owners (save, stale save refused, errors at their lines), submission, and QA's
signed approval on the DCR record page publishing the draft (R-UI-4, R-A11-10-1,
R-P11-10k-1)."""

from __future__ import annotations

import html as htmllib
import re

from tests.web.conftest import PASSWORD, csrf, login
from workflow.change_control import drafts

OLD = "label: Approve action plan"
NEW = "label: Approve CAPA action plan"


def _draft_id(location: str) -> int:
    return int(re.search(r"/definitions/drafts/(\d+)$", location).group(1))


def test_everyone_reads_definitions_with_the_diagram_but_only_process_owners_edit(
        client, account):
    """R-UI-4 R-A11-10-1: an employee sees the list, a definition's source and its SVG
    diagram, but no edit button, and every editing request is refused (403)."""
    account("emma", "employee")
    login(client, "emma")
    page = client.get("/definitions/").get_data(as_text=True)
    assert "Corrective and Preventive Action" in page and "definition_change" in page
    r = client.get("/definitions/capa")
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "<svg" in body and 'data-state="plan_approval"' in body
    assert "Edit: start a draft" not in body
    assert client.get("/definitions/new").status_code == 403
    assert client.get("/definitions/capa/diagram.svg").mimetype == "image/svg+xml"


def test_process_owner_edits_saves_and_a_stale_save_is_refused(client, account, engine):
    """R-UI-4 R-A11-10-1: a process owner starts a draft, saves it; a second save from the
    same (now old) edit is refused with 409, keeps the typed text and the old version."""
    account("paul", "process_owner", "employee")
    login(client, "paul")
    token = csrf(client, "/definitions/capa")
    r = client.post("/definitions/capa/drafts", data={"csrf_token": token})
    assert r.status_code == 302
    draft_id = _draft_id(r.headers["Location"])
    page = client.get(f"/definitions/drafts/{draft_id}").get_data(as_text=True)
    assert 'data-editor="yaml"' in page and "vendor/codemirror/codemirror.js" in page
    assert "<script>" not in page  # CSP: no inline script
    source = drafts.get(engine, draft_id).source
    r = client.post(f"/definitions/drafts/{draft_id}", data={
        "csrf_token": token, "expected_version": 1, "action": "save",
        "source": source.replace(OLD, NEW)})
    assert r.status_code == 200 and "Saved (edit 2)" in r.get_data(as_text=True)
    assert NEW in drafts.get(engine, draft_id).source
    mine = source.replace(OLD, "label: Mine")
    r = client.post(f"/definitions/drafts/{draft_id}", data={
        "csrf_token": token, "expected_version": 1, "action": "save", "source": mine})
    body = r.get_data(as_text=True)
    assert r.status_code == 409 and "Someone saved this draft" in body
    assert "label: Mine" in htmllib.unescape(body)  # the typed text is kept
    assert 'name="expected_version" value="1"' in body  # saving again is refused again
    assert NEW in drafts.get(engine, draft_id).source


def test_every_validation_error_is_shown_at_its_line(client, account, engine):
    """R-UI-4 R-A11-1-1: saving a draft with engine errors and GxP lints lists each at its
    line (and hands the lines to the editor's markers); the submit button is disabled."""
    account("paul", "process_owner", "employee")
    login(client, "paul")
    d = drafts.create(engine, "capa", "paul")
    src = (d.source.replace("    to: investigation\n", "    to: investigaton\n")
           .replace("  - name: assign\n", "  - name: quick\n    from: open\n    to: closed\n"
                    "    roles: [qa]\n  - name: assign\n")
           .replace("signature: {meaning: Approved, roles: [qa]}",
                    "signature: {meaning: Approved}"))
    token = csrf(client, f"/definitions/drafts/{d.id}")
    r = client.post(f"/definitions/drafts/{d.id}", data={
        "csrf_token": token, "expected_version": 1, "action": "save", "source": src})
    body = r.get_data(as_text=True)
    assert r.status_code == 422
    v = drafts.validate(engine, src, key="capa")
    assert len(v.errors) >= 3 and {f.source for f in v.errors} == {"engine", "gxp"}
    items = re.findall(r'<li class="finding sev-(\w+)" data-line="(\d+)">', body)
    assert {(int(n), sev) for sev, n in items} == {(f.line, f.severity) for f in v.findings}
    lines = src.splitlines()
    for text in ("    to: investigaton", "  closed:", "signature: {meaning: Approved}"):
        n = next(i for i, x in enumerate(lines, 1) if text in x)
        assert f'data-line="{n}"' in body, text
        assert f'id="L{n}" class="srcline has-error"' in body, text
    assert "&#34;line&#34;" in body or "&quot;line&quot;" in body  # markers' data
    assert re.search(r"<button[^>]*disabled[^>]*>Submit for QA approval", body)


def test_submit_then_qa_signs_on_the_dcr_page_and_it_is_published(client, account, engine):
    """R-A11-10-1 R-P11-10k-1 R-P11-200-1: the process owner submits; QA approves the DCR
    with the signature dialog (password); the draft is version 2; the submitter cannot."""
    account("paul", "process_owner", "qa", "employee")
    account("quinn", "qa", "employee")
    login(client, "paul")
    d = drafts.create(engine, "capa", "paul")
    d = drafts.save(engine, d.id, d.source.replace(OLD, NEW), "paul", 1)
    token = csrf(client, f"/definitions/drafts/{d.id}")
    r = client.post(f"/definitions/drafts/{d.id}/submit", data={
        "csrf_token": token, "expected_version": d.version, "summary": "Clearer name"})
    assert r.status_code == 302 and "/records/DCR-" in r.headers["Location"]
    number = r.headers["Location"].rsplit("/", 1)[-1]
    assert client.get(f"/records/{number}/do/approve").status_code == 403  # the submitter
    client.post("/logout", data={"csrf_token": csrf(client, "/definitions/")})
    login(client, "quinn")
    page = client.get(f"/records/{number}").get_data(as_text=True)
    assert f"/definitions/drafts/{d.id}" in page
    path = f"/records/{number}/do/approve"
    token = csrf(client, path)
    r = client.post(path, data={"csrf_token": token,
                                "expected_version": engine.get(number).version,
                                "sig_username": "quinn", "sig_password": PASSWORD})
    assert r.status_code == 302, r.get_data(as_text=True)
    assert engine.get(number).state == "published"
    assert drafts.get(engine, d.id).published_version == 2
    listing = client.get("/definitions/").get_data(as_text=True)
    assert "v2" in listing and "v1 retired" in listing
