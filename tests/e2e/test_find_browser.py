"""Finding records and reading the audit trail in a real browser (issue 17 items 1 and 5):
search, filters, paging with first / previous / next, saving a search; the system audit
trail's paging both ways. Screenshots go to tests/e2e/screenshots/."""

from __future__ import annotations

import re

from tests.e2e import test_browser as base
from tests.e2e.test_browser import CHROMIUM, SHOTS, log_in

if CHROMIUM.exists():
    from playwright.sync_api import Page, expect

live, browser, page, pytestmark = base.live, base.browser, base.page, base.pytestmark

DEV = {"description": "Visible particles", "occurred_on": "2026-03-01",
       "discovered_on": "2026-03-02", "area": "Filling", "immediate_actions": "Quarantine"}


def test_search_filters_pages_and_saves(page: Page, live, monkeypatch) -> None:
    """R-UI-30 R-UI-32 R-UI-33: Emma opens Records from the menu, searches by words, pages
    forward and back, narrows by workflow, and saves the search; the chip runs it again."""
    from webapp.views import search as view

    monkeypatch.setattr(view, "PAGE", 4)
    _url, eng, _ = live
    made = [eng.start("deviation", "emma", {**DEV, "title": f"Pump seal leak {i}"}).number
            for i in range(9)]
    capa = eng.start("capa", "emma", {"title": "Pump seal supplier change",
                                      "description": "Łódź supplier"}).number
    log_in(page, "emma")
    page.get_by_role("link", name="Records", exact=True).click()
    expect(page.get_by_role("heading", name="Records")).to_be_visible()
    page.get_by_label("Search").fill("pump seal")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator(".counts strong").first).to_have_text("10")
    numbers = page.locator("a.recno")
    expect(numbers).to_have_text([capa, *made[::-1][:3]])
    page.screenshot(path=str(SHOTS / "records-search.png"), full_page=True)
    page.get_by_role("link", name="Next →").click()
    expect(numbers).to_have_text(made[::-1][3:7])
    page.get_by_role("link", name="Next →").click()
    expect(numbers).to_have_text(made[::-1][7:])
    expect(page.get_by_role("link", name="Next →")).to_have_count(0)
    page.get_by_role("link", name="← Previous").click()
    expect(numbers).to_have_text(made[::-1][3:7])
    page.get_by_role("link", name="« First").click()
    expect(numbers).to_have_text([capa, *made[::-1][:3]])
    page.get_by_label("Workflow").select_option("capa")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(numbers).to_have_text([capa])
    page.get_by_label("Name of the saved search").fill("Pump CAPAs")
    page.get_by_role("button", name="Save search").click()
    expect(page.get_by_text("Search “Pump CAPAs” saved.")).to_be_visible()
    page.get_by_role("link", name="Clear").click()
    page.get_by_role("link", name="Pump CAPAs").click()
    expect(numbers).to_have_text([capa])
    assert re.search(r"q=pump", page.url) and "workflow=capa" in page.url


def test_audit_trail_pages_both_ways(page: Page, live, monkeypatch) -> None:
    """R-UI-35 R-UI-36: Quinn pages the system audit trail older and newer; the change
    column is readable (wider than the other columns) and labels the values."""
    from webapp.views import audit as view

    monkeypatch.setattr(view, "PAGE", 5)
    _url, eng, totps = live
    for i in range(4):
        n = eng.start("deviation", "emma", {**DEV, "title": f"Trail case {i}"}).number
        eng.fire(n, "triage", "quentin", {
            "classification": "minor", "classification_rationale": "Isolated.",
            "capa_required": False, "capa_rationale": "One-off, no systemic cause.",
            "investigator": "olga"})
    log_in(page, "quinn", totps["quinn"])
    page.get_by_role("link", name="Audit trail").click()
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(5)
    first = rows.all_inner_texts()
    page.get_by_role("link", name="Older events →").click()
    expect(rows).to_have_count(5)
    second = rows.all_inner_texts()
    assert not set(first) & set(second)
    page.get_by_role("link", name="Older events →").click()
    page.get_by_role("link", name="← Newer events").click()
    expect(rows).to_have_count(5)
    assert rows.all_inner_texts() == second
    page.get_by_role("link", name="← Newer events").click()
    assert rows.all_inner_texts() == first
    page.get_by_label("Action").select_option("update")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("td.changes").first).to_contain_text("Investigator: — → Olga Owner (olga)")
    widths = page.evaluate("""() => {
        const r = document.querySelector('table.audit tbody tr');
        return [...r.cells].map(c => c.getBoundingClientRect().width); }""")
    assert widths[5] >= 300 and widths[5] == max(widths), widths
    page.screenshot(path=str(SHOTS / "audit-trail.png"), full_page=True)
