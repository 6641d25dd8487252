"""Content controls in a real browser (issue 15): list rows added and removed in the page,
the approved plan refused at implementation, a superseded signature, the generated grant
list. Screenshots go to tests/e2e/screenshots/."""

from __future__ import annotations

import re

from tests.e2e import test_browser as base
from tests.e2e.test_browser import CHROMIUM, SHOTS, add_user, log_in
from tests.web.conftest import PASSWORD
from workflow.signatures.part11 import PasswordSignature

if CHROMIUM.exists():
    from playwright.sync_api import Page, expect

# the live server, browser and page fixtures (and the skip without chromium) of the browser tests
live, browser, page, pytestmark = base.live, base.browser, base.page, base.pytestmark


def capa_at_action_plan(eng) -> str:
    r = eng.start(
        "capa",
        "emma",
        {"title": "Wrong label on batch 42", "description": "Batch 42 carried the label of batch 41."},
    )
    eng.fire(r.number, "assign", "quentin", {"owner": "olga"})
    eng.fire(
        r.number,
        "submit_root_cause",
        "olga",
        {"root_cause_category": "method", "root_cause": "Labels printed in advance."},
    )
    return r.number


def test_rows_are_added_and_removed_in_the_page(page: Page, live) -> None:
    """R-UI-21: "Add a row" adds a labelled row in the page (no reload), Remove takes one
    out and renumbers the labels; the plan is saved with exactly the rows left."""
    _, eng, _ = live
    number = capa_at_action_plan(eng)
    log_in(page, "olga")
    page.goto(f"/records/{number}/do/submit_plan")
    add = page.get_by_role("button", name="Add a row to Actions")
    for text in ("Print labels at the line", "Obsolete action", "Second-person check"):
        page.get_by_label(re.compile(r"^Action, row \d of Actions$")).last.fill(text)
        add.click()
    expect(page.get_by_label("Action, row 4 of Actions")).to_be_focused()
    page.get_by_role("button", name="Remove row 2 of Actions").click()
    expect(page.get_by_label("Action, row 2 of Actions")).to_have_value("Second-person check")
    page.get_by_label("Effectiveness criteria").fill("No label mix-up in 6 months")
    page.screenshot(path=str(SHOTS / "content-list-rows.png"), full_page=True)
    page.get_by_role("button", name="Submit action plan for approval").click()
    expect(page.get_by_text("is now QA plan approval")).to_be_visible()
    assert [a["description"] for a in eng.get(number).data["actions"]] == [
        "Print labels at the line",
        "Second-person check",
    ]


def test_locked_plan_and_superseded_signature_as_the_owner_sees_them(page: Page, live) -> None:
    """R-P11-70-2 R-WF-20: rewriting the approved plan at implementation is refused with the
    signature named; after a revision the record page shows QA's approval superseded."""
    _, eng, _ = live
    number = capa_at_action_plan(eng)
    eng.fire(
        number,
        "submit_plan",
        "olga",
        {
            "actions": [{"description": "Print labels at the line", "responsible": "olga"}],
            "effectiveness_criteria": "No label mix-up in 6 months",
        },
    )
    eng.fire(number, "approve_plan", "quentin", signature=PasswordSignature("quentin", PASSWORD, None))
    log_in(page, "olga")
    page.goto(f"/records/{number}/do/complete_implementation")
    page.get_by_label("Action, row 1 of Actions").fill("Print labels in the office")
    page.get_by_label("Implementation summary").fill("Done.")
    page.get_by_role("button", name="Complete implementation").click()
    expect(page.get_by_text(re.compile("is locked by the signature 'Approved'"))).to_be_visible()
    page.screenshot(path=str(SHOTS / "content-locked.png"), full_page=True)
    eng.fire(number, "revise_plan", "olga", reason="Printing moves to the line office")
    eng.fire(
        number,
        "submit_plan",
        "olga",
        {
            "actions": [{"description": "Print labels in the line office", "responsible": "olga"}],
            "effectiveness_criteria": "No label mix-up in 6 months",
        },
    )
    page.goto(f"/records/{number}")
    expect(page.locator(".sig-superseded .badge-superseded")).to_have_text("Superseded")
    page.screenshot(path=str(SHOTS / "content-superseded.png"), full_page=True)


def test_generated_grants_form(page: Page, live) -> None:
    """R-WF-23 R-UI-21: the system owner sees the generated grants as fixed text with a
    decision to make, and his own row read-only, passed to a second reviewer."""
    _, eng, _ = live
    add_user(eng, "sam", "Sam System-Owner", "system_owner", "employee")
    number = eng.start(
        "access_review",
        "quentin",
        {
            "title": "QMS access review 2026-Q1",
            "system": "QMS",
            "period": "2026-Q1",
            "grants": [
                {"user": "olga", "role": "capa_owner"},
                {"user": "quentin", "role": "qa"},
                {"user": "sam", "role": "system_owner"},
            ],
        },
    ).number
    log_in(page, "sam")
    page.goto(f"/records/{number}/do/attest_own_access_pending")
    expect(page.get_by_text("Row 3 is about your own access")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Add a row"))).to_have_count(0)
    page.get_by_label("Decision, row 1 of User access grants").select_option("keep")
    page.get_by_label("Decision, row 2 of User access grants").select_option("keep")
    page.screenshot(path=str(SHOTS / "content-generated-grants.png"), full_page=True)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign: Reviewed and attested").click()
    expect(page.get_by_text(re.compile("is now Second review"))).to_be_visible()
