"""The record page in a real browser (issue 17 items 3 and 4): where the record stands (its
path as text and the state diagram with the current state and the steps taken), the true
copy download, and printing. Screenshots go to tests/e2e/screenshots/."""

from __future__ import annotations

import io

import pypdf

from tests.e2e import test_browser as base
from tests.e2e.test_browser import CHROMIUM, SHOTS, add_user, log_in

if CHROMIUM.exists():
    from playwright.sync_api import Page, expect

# the live server, browser and page fixtures (and the skip without chromium) of the browser tests
live, browser, page, pytestmark = base.live, base.browser, base.page, base.pytestmark

DEV = {"title": "Particles in vial, Łódź line 測試", "description": "Visible particles",
       "occurred_on": "2026-03-01", "discovered_on": "2026-03-02", "area": "Filling",
       "immediate_actions": "Batch quarantined"}


def test_record_page_shows_where_it_stands_and_downloads_a_copy(page: Page, live) -> None:
    """R-UI-41 R-UI-40 R-P11-10b-1: the record page lists the states the record went through
    with dates (the current one marked) and draws the state diagram with the current state
    and the steps taken highlighted; "Download copy" gives the PDF copy with the title in
    Polish and Japanese intact; printing hides the application around the record."""
    from workflow import config
    from workflow.signatures.keys import FileKeyProvider

    _, eng, _ = live
    FileKeyProvider(config.settings()).create("anchor")  # `qms init` creates it
    add_user(eng, "olive", "Olive Owner", "deviation_owner", "employee")
    n = eng.start("deviation", "emma", DEV).number
    eng.fire(n, "triage", "quentin", {"classification": "minor",
                                      "classification_rationale": "one vial",
                                      "capa_required": False,
                                      "capa_rationale": "isolated, not systemic",
                                      "investigator": "olive"})
    log_in(page, "quentin")
    page.goto(f"/records/{n}")
    where = page.locator(".where-card")
    steps = where.locator("ol.state-path > li")
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_contain_text("Reported")
    expect(steps.nth(0)).to_contain_text("raised by Emma Employee")
    expect(steps.nth(1)).to_contain_text("Investigation")
    expect(steps.nth(1)).to_contain_text("Triage and assign investigation by Quentin QA")
    expect(steps.nth(1)).to_have_attribute("aria-current", "step")
    svg = where.locator("svg.wf-diagram")
    expect(svg).to_be_visible()
    expect(svg.locator("g.wf-current")).to_have_count(1)
    assert svg.locator("g.wf-current").get_attribute("data-state") == "investigation"
    assert sorted(g.get_attribute("data-state") for g in svg.locator("g.wf-visited").all()) == [
        "investigation", "reported"]
    taken = svg.locator("path.wf-taken")
    expect(taken).to_have_count(1)
    assert taken.get_attribute("data-transition") == "triage"
    assert "current state Investigation" in svg.locator("title").first.text_content()
    where.screenshot(path=str(SHOTS / "record-where-it-stands.png"))

    page.get_by_text("Download copy").click()
    with page.expect_download() as dl:
        page.get_by_role("link", name="PDF (human-readable)").click()
    d = dl.value
    assert d.suggested_filename == f"{n}-true-copy.pdf"
    pdf = d.path().read_bytes()
    text = " ".join(" ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages
                             ).split())
    assert "Particles in vial, Łódź line 測試" in text
    page.screenshot(path=str(SHOTS / "record-page-copy-menu.png"), full_page=False)

    page.emulate_media(media="print")
    expect(page.locator(".topbar")).to_be_hidden()
    expect(page.locator(".head-actions")).to_be_hidden()
    expect(page.locator(".where-card")).to_be_visible()
    page.screenshot(path=str(SHOTS / "record-page-print.png"), full_page=True)


def test_owner_attaches_evidence_and_qa_downloads_it(page: Page, live, tmp_path,
                                                     monkeypatch) -> None:
    """R-WF-30 R-WF-31: the CAPA owner chooses a file in "Complete implementation"; the record
    page lists it with its type, size and SHA-256; QA downloads exactly those bytes as a
    file (never shown in the page)."""
    from tests.e2e.test_content_controls_browser import capa_at_action_plan
    from tests.integration.test_attachments import PDF
    from workflow.signatures.mac import VouchedSignature, VouchingVerifier

    monkeypatch.setenv("QMS_ATTACHMENT_DIR", str(tmp_path / "files"))
    _, eng, _ = live
    n = capa_at_action_plan(eng)
    eng.fire(n, "submit_plan", "olga", {"actions": [{"description": "Label check",
                                                     "responsible": "olga"}],
                                        "effectiveness_criteria": "No mix-ups"})
    verifier, eng.verifier = eng.verifier, VouchingVerifier()
    try:
        eng.fire(n, "approve_plan", "quentin", signature=VouchedSignature("quentin"))
    finally:
        eng.verifier = verifier
    evidence = tmp_path / "SOP-12 rev 4 (Łódź).pdf"
    evidence.write_bytes(PDF)

    log_in(page, "olga")
    page.goto(f"/records/{n}/do/complete_implementation")
    page.get_by_label("Implementation summary").fill("Second-person check added to SOP-12.")
    page.get_by_label("Done, row 1 of Actions").select_option("yes")
    page.get_by_label("Implementation evidence (file)").set_input_files(str(evidence))
    page.screenshot(path=str(SHOTS / "record-attach-form.png"), full_page=True)
    page.get_by_role("button", name="Complete implementation").click()
    expect(page.get_by_text("is now")).to_be_visible()
    link = page.get_by_role("link", name="SOP-12 rev 4 (Łódź).pdf")
    expect(link).to_be_visible()
    expect(page.locator(".fields")).to_contain_text("application/pdf")
    page.locator(".fields").screenshot(path=str(SHOTS / "record-attachment.png"))

    # leave the page first: a stylesheet or script still loading would bring the
    # session cookie back after it was cleared (then /login sends us home)
    page.goto("about:blank")
    page.context.clear_cookies()
    log_in(page, "quentin")
    page.goto(f"/records/{n}")
    with page.expect_download() as dl:
        page.get_by_role("link", name="SOP-12 rev 4 (Łódź).pdf").click()
    assert dl.value.suggested_filename == "SOP-12 rev 4 (Łódź).pdf"
    assert dl.value.path().read_bytes() == PDF
