"""The definition editor in a real browser (same live-server pattern as test_browser.py):
a process owner edits a draft in CodeMirror, sees a validation error marked at its line,
fixes it, saves, looks at the diagram, submits; QA approves the DCR with password and TOTP;
the draft is published as version 2 (R-UI-4, R-A11-10-1, R-P11-10k-1, R-P11-200-1)."""

from __future__ import annotations

import re

from tests.e2e import test_browser as _tb
from tests.e2e.test_browser import CHROMIUM, SHOTS, add_user, log_in, next_code
from tests.web.conftest import PASSWORD
from workflow.change_control import drafts

# the live server, browser and page fixtures of test_browser.py (same pattern, same skip)
browser, live, page, pytestmark = _tb.browser, _tb.live, _tb.page, _tb.pytestmark

if CHROMIUM.exists():
    from playwright.sync_api import Page, expect


def _set_source(page: Page, text: str) -> None:
    page.evaluate("(t) => document.querySelector('.CodeMirror').CodeMirror.setValue(t)", text)


def test_edit_validate_submit_approve_publish(page: Page, live) -> None:
    """R-UI-4 R-A11-10-1 R-P11-10k-1 R-P11-200-1: edit -> validate (error at its line, marked
    in the editor) -> fix and save -> diagram and diff -> submit -> QA signs "Approved for
    use" with password and code -> version 2 is published and listed."""
    base, eng, totps = live
    add_user(eng, "paul", "Paul Process-Owner", "process_owner", "employee")
    errors: list[str] = []  # script errors and CSP refusals; 422 answers are expected
    page.on("console", lambda m: errors.append(m.text) if m.type == "error"
            and "Failed to load resource" not in m.text else None)
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    log_in(page, "paul")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Definitions").click()
    expect(page.get_by_role("heading", name="Workflow definitions")).to_be_visible()
    page.screenshot(path=str(SHOTS / "definitions-list.png"), full_page=True)
    page.get_by_role("link", name="Corrective and Preventive Action").click()
    expect(page.locator("svg.wf-diagram")).to_be_visible()
    page.get_by_role("button", name="Edit: start a draft").click()
    expect(page).to_have_url(re.compile(r"/definitions/drafts/\d+$"))
    draft_id = int(page.url.rsplit("/", 1)[-1])
    expect(page.locator(".CodeMirror")).to_be_visible()  # the editor replaced the textarea
    expect(page.locator(".CodeMirror-linenumber").first).to_be_visible()
    # colours (in the rendered lines: CodeMirror also keeps a hidden copy of a line to measure)
    expect(page.locator(".CodeMirror-code .cm-atom, .CodeMirror-code .cm-keyword, "
                        ".CodeMirror-code .cm-string").first).to_be_visible()

    source = drafts.get(eng, draft_id).source
    broken = source.replace("    to: investigation\n", "    to: investigaton\n")
    _set_source(page, broken)
    page.get_by_role("button", name="Save and validate").click()
    line = broken.splitlines().index("    to: investigaton") + 1
    finding = page.locator(f'li.finding[data-line="{line}"]')
    expect(finding).to_contain_text("unknown state 'investigaton'")
    expect(page.locator(".qms-marker-error")).to_have_count(1)
    expect(page.locator(".CodeMirror .qms-line-error")).to_have_count(1)
    expect(page.get_by_role("button", name="Submit for QA approval")).to_be_disabled()
    page.screenshot(path=str(SHOTS / "definition-editor-error.png"), full_page=True)

    fixed = source.replace("label: Approve action plan", "label: Approve CAPA action plan")
    _set_source(page, fixed)
    page.get_by_role("button", name="Save and validate").click()
    expect(page.locator(".flash-success")).to_contain_text("No errors")
    expect(page.locator(".ok-msg")).to_contain_text("No problems")
    expect(page.locator("pre.diff .d-add")).to_contain_text("Approve CAPA action plan")
    expect(page.locator('svg.wf-diagram g.wf-label[data-transition="approve_plan"]')
           ).to_contain_text("Approve CAPA action plan")
    page.get_by_role("button", name="Run dry run").click()
    expect(page.locator("#dry-result")).to_contain_text("reached Closed")
    page.locator(".diagram-card").screenshot(path=str(SHOTS / "definition-diagram.png"))
    page.screenshot(path=str(SHOTS / "definition-editor.png"), full_page=True)

    page.get_by_label("Change summary").fill("Clearer name for the plan approval step")
    page.get_by_role("button", name="Submit for QA approval").click()
    expect(page).to_have_url(re.compile(r"/records/DCR-\d{4}-\d{4}$"))
    number = page.url.rsplit("/", 1)[-1]
    assert errors == [], errors  # no script or CSP errors on the way
    assert [u for u in missing if not u.endswith("/favicon.ico")] == []

    # leave the page first: a stylesheet or script still loading would bring the
    # session cookie back after it was cleared (then /login sends us home)
    page.goto("about:blank")
    page.context.clear_cookies()
    log_in(page, "quinn", totps["quinn"])
    page.goto(f"/records/{number}")
    page.get_by_role("link", name=re.compile("Approve and publish")).click()
    sig = page.locator("fieldset.signature")
    expect(sig).to_contain_text("Approved for use")
    sig.get_by_label("Password").fill(PASSWORD)
    sig.get_by_label("Authentication code").fill(next_code(totps["quinn"]))
    page.get_by_role("button", name="Sign: Approved for use").click()
    expect(page.locator(".meta .pill")).to_have_text("Published")
    expect(page.locator("li.sig .sig-meaning")).to_have_text("Approved for use")
    page.screenshot(path=str(SHOTS / "definition-change-approved.png"), full_page=True)
    page.goto("/definitions/")
    expect(page.locator('tr[data-key="capa"]')).to_contain_text("v2")
    expect(page.locator('tr[data-key="capa"]')).to_contain_text("v1 retired")
    assert drafts.get(eng, draft_id).published_version == 2
