"""Profile, the idle-timeout warning and drafts in a real browser (headless Chromium, issue 17
items 6, 7 and 9), and the pages at phone and desktop widths.

The server's clock is the frozen test clock (the live server runs in this process): the
session ends on the server only when the test moves the clock. The page's warning counts real
seconds in the browser, so these tests use a one-minute idle timeout and a warning 57 seconds
before it: the warning shows three seconds after a page loads.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from tests.conftest import TEST_KEY
from tests.e2e.test_browser import (  # noqa: F401 - browser: the fixture
    CHROMIUM,
    SHOTS,
    add_user,
    browser,
)
from tests.web.conftest import PASSWORD, POLICY
from workflow import clock
from workflow.db.models import AuditEvent, FormDraft
from workflow.engine.core import Engine
from workflow.identity import users as identity
from workflow.signatures.part11 import Part11Verifier

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")

if CHROMIUM.exists():
    from playwright.sync_api import Browser, Page, expect

SHORT = dataclasses.replace(POLICY, idle_minutes=1)
DEV = {"title": "OOS assay result, batch B-1001", "description": "Assay 91.2 % (spec 95-105 %)",
       "occurred_on": "2026-03-01", "discovered_on": "2026-03-02", "area": "QC laboratory",
       "immediate_actions": "Batch B-1001 quarantined", "batch": "B-1001"}


@pytest.fixture
def live(committed_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[tuple[str, Engine]]:
    from webapp import create_app

    monkeypatch.setenv("QMS_INSTANCE_DIR", str(tmp_path))
    monkeypatch.setenv("QMS_SESSION_WARN_SECONDS", "57")
    monkeypatch.setenv("QMS_DRAFT_AUTOSAVE_SECONDS", "1")
    eng = committed_engine
    eng.verifier = Part11Verifier(TEST_KEY, SHORT)
    add_user(eng, "emma", "Emma Employee", "employee")
    add_user(eng, "olga", "Olga Owner", "capa_owner", "employee")
    add_user(eng, "quentin", "Quentin QA", "qa", "employee")
    app = create_app({"SECRET_KEY": "e2e-secret", "QMS_ENGINE": eng, "QMS_POLICY": SHORT})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="e2e-people", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", eng
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def new_page(b: Browser, base: str, width: int = 1280, height: int = 860) -> Page:
    context = b.new_context(base_url=base, viewport={"width": width, "height": height},
                                  locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(8000)
    return context.new_page()


def log_in(page: Page, username: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()


def no_console_errors(page: Page) -> list[str]:
    """Script errors and CSP refusals ("Refused to execute inline script..."); the browser's
    own favicon request (a 404) is not one."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_profile_page_saves_time_zone_and_preferences(browser, live):  # noqa: F811
    """R-UI-52: a person picks a zone from the tz database list, an address and which
    notifications arrive how; the page saves them, the footer names the new zone, and the
    change is audited."""
    base, eng = live
    page = new_page(browser, base)
    errors = no_console_errors(page)
    log_in(page, "emma")
    page.get_by_role("link", name="Emma Employee").click()
    expect(page.get_by_role("heading", name="Profile")).to_be_visible()
    page.get_by_label("Time zone").select_option("Asia/Tokyo")
    page.get_by_label("E-mail", exact=True).fill("emma.employee@example.org")
    page.get_by_label("One daily digest").check()
    page.get_by_label("A task of mine is due soon, by e-mail").uncheck()
    page.screenshot(path=str(SHOTS / "profile-1280.png"), full_page=True)
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_text("Your profile was saved.")).to_be_visible()
    expect(page.get_by_text("Times shown in Asia/Tokyo")).to_be_visible()
    expect(page.get_by_label("A task of mine is due soon, by e-mail")).not_to_be_checked()
    with eng.reader() as s:
        u = identity.get_user(s, "emma")
        assert (u.timezone, u.email, u.notify_mode) == ("Asia/Tokyo",
                                                        "emma.employee@example.org", "digest")
        assert s.execute(select(AuditEvent).where(
            AuditEvent.action == "profile_changed")).scalar_one().actor_id == u.id
    assert errors == []


def test_timeout_warning_stay_signed_in_keeps_the_session(browser, live):  # noqa: F811
    """R-UI-53: before the idle timeout a warning with "Stay signed in" appears (static
    script, no CSP violation); the button calls the keep-alive and the warning goes away."""
    base, _ = live
    page = new_page(browser, base)
    errors = no_console_errors(page)
    log_in(page, "emma")
    warning = page.get_by_role("alertdialog")
    expect(warning).to_be_visible(timeout=10000)
    expect(warning).to_contain_text("You will be signed out in")
    stay = page.get_by_role("button", name="Stay signed in")
    expect(stay).to_be_focused()
    page.screenshot(path=str(SHOTS / "timeout-warning-1280.png"))
    with page.expect_response(re.compile(r"/session/keepalive$")) as resp:
        stay.click()
    assert resp.value.status == 200 and resp.value.json()["idle_seconds"] == 60
    expect(warning).to_be_hidden()
    assert errors == []


def test_draft_survives_the_idle_timeout_and_is_restored(browser, live):  # noqa: F811
    """R-UI-54 R-UI-53: QA types a triage rationale and does nothing else; the draft is
    saved by the page's script (never the password); the session times out on the server;
    the page goes to the login page; after logging in again the form shows the text with a
    notice; submitting the step deletes the draft."""
    base, eng = live
    number = eng.start("deviation", "emma", DEV).number
    page = new_page(browser, base)
    # the page's own clock is Playwright's (it runs in real time until moved): the minute
    # the page waits before it reloads passes in one step instead of being waited out
    page.clock.install()
    errors = no_console_errors(page)
    log_in(page, "quentin")
    page.goto(f"/records/{number}/do/triage")
    page.get_by_label("Classification rationale").fill("Single OOS result; method robust")
    expect(page.locator(".draft-status")).to_contain_text("Draft saved", timeout=6000)
    with eng.reader() as s:
        (row,) = s.execute(select(FormDraft)).scalars()
        assert "Single OOS result" in row.data and "csrf" not in row.data
    clock.advance(timedelta(minutes=2))  # the server's idle timeout passes
    page.clock.fast_forward("01:05")  # and the page's minute
    expect(page).to_have_url(re.compile(r"/login"), timeout=10000)
    expect(page.get_by_text("inactivity", exact=False).or_(
        page.get_by_text("session", exact=False)).first).to_be_visible()
    page.get_by_label("Username").fill("quentin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(rf"/records/{number}/do/triage"))
    expect(page.get_by_text("Your draft was restored")).to_be_visible()
    expect(page.get_by_label("Classification rationale")).to_have_value(
        "Single OOS result; method robust")
    page.screenshot(path=str(SHOTS / "draft-restored-1280.png"), full_page=True)
    page.locator("#classification").select_option("minor")
    page.locator("#capa_required").select_option("no")
    page.locator("#capa_rationale").fill("Isolated analyst error, not systemic.")
    page.locator("#investigator").select_option("olga")
    page.get_by_role("button", name="Triage and assign investigation").click()
    expect(page.get_by_text("Triage and assign investigation: done.")).to_be_visible()
    with eng.reader() as s:
        assert s.execute(select(FormDraft)).first() is None
    assert errors == []


@pytest.mark.parametrize("width", [390, 1280])
def test_inbox_record_and_signing_fit_the_screen(browser, live, width):  # noqa: F811
    """R-UI-55: at 390 px (a phone) and 1280 px the inbox, the record page and a step's form
    with the signing dialog are no wider than the window (no sideways scrolling of the page);
    screenshots for a person to look at."""
    base, eng = live
    number = eng.start("deviation", "emma", DEV).number
    eng.start("training_assignment", "quentin", {
        "title": "SOP-12 v5 read and understood", "document": "SOP-12",
        "document_version": "5", "trainee": "quentin", "due_date": "2026-12-10"})
    page = new_page(browser, base, width=width, height=844 if width == 390 else 860)
    log_in(page, "quentin")
    for name, path in (("inbox", "/"), ("record", f"/records/{number}"),
                       ("training", "/training"), ("profile", "/account/profile")):
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        assert overflow <= width, f"{name} is {overflow} px wide at {width} px"
    eng.fire(number, "triage", "quentin", {
        "classification": "minor", "classification_rationale": "single result",
        "capa_required": False, "capa_rationale": "Isolated analyst error, not systemic.",
        "investigator": "olga"})
    eng.fire(number, "submit_investigation", "olga", {
        "root_cause_category": "human_error", "root_cause": "dilution error",
        "impact_assessment": "none", "batch_disposition": "release", "capa_required": False})
    page.goto(f"/records/{number}")
    sign = page.locator("a.button", has_text=re.compile("Approve|Close|Sign"))
    if sign.count():
        sign.first.click()
        expect(page.locator("fieldset.signature")).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=str(SHOTS / f"signing-{width}.png"), full_page=True)
        assert overflow <= width, f"signing is {overflow} px wide at {width} px"
