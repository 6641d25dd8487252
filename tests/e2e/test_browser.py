"""The web UI in a real browser: headless Debian Chromium driven by Playwright (sync API)
against a live server on a loopback port, backed by a committed database.

Time is the frozen test clock (tests/conftest.py); TOTP codes are computed with pyotp from
the enrolled secret after moving the clock one 30-second step - never by sleeping.
Screenshots go to tests/e2e/screenshots/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from tests.conftest import TEST_KEY
from tests.factories import give_training
from tests.web.conftest import PASSWORD, POLICY
from workflow import clock, tasks
from workflow.db.models import AuditEvent, Signature, Task, TaskStatus
from workflow.engine.core import Engine
from workflow.identity import enablement, passwords
from workflow.identity import users as identity
from workflow.identity.totp import begin_totp_enrolment, confirm_totp_enrolment
from workflow.signatures.mac import VouchedSignature, VouchingVerifier
from workflow.signatures.part11 import Part11Verifier

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).parent / "screenshots"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser tests need Debian's chromium at /usr/bin/chromium (apt-get install "
           "chromium); CI installs it")

if CHROMIUM.exists():
    from playwright.sync_api import Browser, Page, expect, sync_playwright


# --------------------------------------------------------------------------- fixtures


def add_user(eng: Engine, username: str, full_name: str, *roles: str, totp: bool = False,
             timezone: str = "UTC") -> pyotp.TOTP | None:
    """An active user with PASSWORD and ``roles``; with ``totp`` an enrolled authenticator."""
    with eng.unit() as s:
        actor = identity.system_user(s)
        u = identity.create_user(s, username, full_name, email=f"{username}@example.com",
                                 timezone=timezone, actor=actor, reason="e2e")
        for role in roles:
            identity.grant_role(s, u, role, actor=actor, reason="e2e")
        passwords.set_password(s, u, PASSWORD, actor=actor, policy=POLICY)
        enablement.enable_for_system(s, u, reason="e2e")
    if not totp:
        return None
    e = begin_totp_enrolment(eng, username, POLICY)
    confirm_totp_enrolment(eng, username, pyotp.TOTP(e.secret).at(clock.now()))
    return pyotp.TOTP(e.secret)


def next_code(totp: pyotp.TOTP) -> str:
    clock.advance(timedelta(seconds=30))
    return totp.at(clock.now())


@pytest.fixture
def live(committed_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[tuple[str, Engine, dict[str, pyotp.TOTP]]]:
    """(base URL, engine, TOTP generators): the app served on 127.0.0.1:<free port>."""
    from webapp import create_app

    monkeypatch.setenv("QMS_INSTANCE_DIR", str(tmp_path))
    eng = committed_engine
    eng.verifier = Part11Verifier(TEST_KEY, POLICY)
    totps = {}
    add_user(eng, "emma", "Emma Employee", "employee")
    add_user(eng, "olga", "Olga Owner", "capa_owner", "employee")
    add_user(eng, "quentin", "Quentin QA", "qa", "employee")
    totps["quinn"] = add_user(eng, "quinn", "Quinn QA", "qa", "employee", totp=True,
                              timezone="Europe/Berlin")
    app = create_app({"SECRET_KEY": "e2e-secret", "QMS_ENGINE": eng, "QMS_POLICY": POLICY})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="e2e-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", eng, totps
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, live) -> Iterator[Page]:
    context = browser.new_context(base_url=live[0], viewport={"width": 1280, "height": 860},
                                  locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(5000)
    pg = context.new_page()
    yield pg
    context.close()


def log_in(page: Page, username: str, totp: pyotp.TOTP | None = None) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    if totp is not None:
        expect(page).to_have_url(re.compile(r"/login/code$"))
        page.get_by_label("Authentication code").fill(next_code(totp))
        page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()


def capa_at_plan_approval(eng: Engine) -> str:
    r = eng.start("capa", "emma", {"title": "Wrong label on batch 42",
                                   "description": "Batch 42 carried the label of batch 41."})
    eng.fire(r.number, "assign", "quentin", {"owner": "olga"})
    eng.fire(r.number, "submit_root_cause", "olga", {"root_cause_category": "method",
                                                    "root_cause": "Labels printed in advance."})
    eng.fire(r.number, "submit_plan", "olga", {
        "actions": [{"description": "Print labels at the line", "responsible": "olga"}],
        "effectiveness_criteria": "No label mix-up in 6 months"})
    return r.number


def unlabelled_inputs(page: Page) -> list[str]:
    return page.evaluate("""() => Array.from(document.querySelectorAll(
        'input:not([type=hidden]), select, textarea'))
        .filter(e => !e.labels || e.labels.length === 0
                     || !Array.from(e.labels).some(l => l.textContent.trim()))
        .map(e => e.name || e.id || e.outerHTML)""")


def tab_to_primary_button(page: Page, limit: int = 40) -> int:
    """Press Tab until the primary button has focus; returns how many presses it took."""
    for n in range(1, limit + 1):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.matches('button.primary')"):
            return n
    raise AssertionError(f"the primary button was not reached with {limit} Tab presses")


# --------------------------------------------------------------------------- scenarios


def test_employee_creates_a_capa_from_the_new_record_form(page: Page, live) -> None:
    """R-P11-10d-1 R-P11-10e-1 R-P11-10e-2: an employee logs in, creates a CAPA from the New
    record form and sees it on its record page in state Open, raised by them."""
    _, eng, _ = live
    log_in(page, "emma")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="New record").click()
    page.get_by_role("link", name=re.compile("Corrective and Preventive Action")).click()
    page.get_by_label("Title").fill("Temperature excursion in cold room 3")
    page.get_by_label("Problem description").fill("Logger showed 9 °C for 40 minutes.")
    page.get_by_label("Source", exact=True).select_option("audit")
    page.get_by_role("button", name="Create Corrective and Preventive Action").click()

    expect(page).to_have_url(re.compile(r"/records/CAPA-\d{4}-\d{4}$"))
    number = page.url.rsplit("/", 1)[-1]
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        "Temperature excursion in cold room 3")
    expect(page.locator(".meta .pill")).to_have_text("Open")
    expect(page.locator(".flash-success")).to_have_text(f"{number} was created.")
    expect(page.locator(".meta")).to_contain_text("Raised by Emma Employee")
    expect(page.locator(".timeline")).to_contain_text("Emma Employee")
    page.screenshot(path=str(SHOTS / "record-new-capa.png"), full_page=True)
    rec = eng.get(number)
    assert (rec.state, rec.data["source"]) == ("open", "audit")


def test_qa_signs_the_action_plan_in_the_signature_dialog(page: Page, live) -> None:
    """R-P11-200-1 R-P11-50-1 R-P11-300d-2 R-P11-10g-3: a TOTP-enrolled QA user opens the CAPA
    from the inbox and signs "Approved" with username, password and code; a wrong password is
    refused with a message and signs nothing; the record page then shows the manifestation:
    printed name, UTC time and meaning."""
    _, eng, totps = live
    number = capa_at_plan_approval(eng)
    log_in(page, "quinn", totps["quinn"])

    row = page.get_by_role("row").filter(has_text=number)
    expect(row).to_contain_text("QA plan approval")
    expect(row).to_contain_text("Wrong label on batch 42")
    page.screenshot(path=str(SHOTS / "inbox.png"), full_page=True)
    row.get_by_role("link", name="Open").click()

    expect(page).to_have_url(re.compile(f"/records/{number}$"))
    page.get_by_role("link", name=re.compile("Approve action plan")).click()
    expect(page.get_by_role("heading", name="Approve action plan")).to_be_visible()
    sig = page.locator("fieldset.signature")
    expect(sig).to_contain_text("By signing you confirm: Approved")
    expect(sig.get_by_label("Username")).to_have_value("quinn")

    # a wrong password: refused, nothing signed, the record stays where it was
    sig.get_by_label("Username").fill("quinn")
    sig.get_by_label("Password").fill("not-my-password")
    sig.get_by_label("Authentication code").fill(next_code(totps["quinn"]))
    page.get_by_role("button", name="Sign: Approved").click()
    expect(page.locator("div.flash-error")).to_have_text(
        "The password is wrong; nothing was signed.")
    # the signing slip says how many tries are left before the lockout (issue 14, item 4)
    expect(page.locator("[data-attempts-left]")).to_have_text(
        "4 attempts left before your account is locked.")
    expect(sig.get_by_label("Password")).to_have_value("")  # never echoed back
    with eng.reader() as s:
        assert s.execute(select(Signature)).first() is None
        failed = s.execute(select(AuditEvent).where(AuditEvent.action == "signature_failed")
                           ).scalars().all()
    assert [(e.actor_name, e.changes["detail"]) for e in failed] == [("Quinn QA",
                                                                      "wrong password")]
    assert eng.get(number).state == "plan_approval"

    sig.get_by_label("Password").fill(PASSWORD)
    sig.get_by_label("Authentication code").fill(next_code(totps["quinn"]))
    signed_at = clock.now()
    page.screenshot(path=str(SHOTS / "signature-dialog.png"), full_page=True)
    page.get_by_role("button", name="Sign: Approved").click()

    expect(page).to_have_url(re.compile(f"/records/{number}$"))
    expect(page.locator(".flash-success")).to_contain_text(
        f"Approve action plan: done. {number} is now Implementation.")
    card = page.locator("li.sig")
    expect(card).to_have_count(1)
    expect(card.locator(".sig-meaning")).to_have_text("Approved")
    expect(card.locator(".sig-name")).to_contain_text("Quinn QA")
    expect(card.locator("time")).to_have_text(signed_at.strftime("%Y-%m-%d %H:%M:%S UTC"))
    # ... and in the signer's own zone (Europe/Berlin is UTC+1 in March)
    expect(card.locator(".sig-time")).to_contain_text(
        (signed_at + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S CET"))
    expect(page.locator(".meta .pill")).to_have_text("Implementation")
    page.screenshot(path=str(SHOTS / "record-signed.png"), full_page=True)
    with eng.reader() as s:
        sigs = s.execute(select(Signature)).scalars().all()
    assert [(x.meaning, x.signer_name, x.signer_username) for x in sigs] == [
        ("Approved", "Quinn QA", "quinn")]


def test_keyboard_and_labels_on_login_and_signature_pages(page: Page, live) -> None:
    """R-P11-10d-1 R-P11-200-1: accessibility smoke - every input on the login and signature
    pages has a label, and the primary button is reachable (and usable) with the keyboard."""
    _, eng, _ = live
    number = capa_at_plan_approval(eng)
    page.goto("/login")
    assert unlabelled_inputs(page) == []
    expect(page.get_by_label("Username")).to_be_focused()  # autofocus
    page.keyboard.type("quentin")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    assert tab_to_primary_button(page) == 1
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()

    page.goto(f"/records/{number}/do/approve_plan")
    assert unlabelled_inputs(page) == []
    page.locator("body").focus()
    presses = tab_to_primary_button(page)
    # the action-plan list now has "Add a row" / "Remove" controls (issue 15, control 9): 21 stops
    assert presses <= 24, f"{presses} Tab presses to reach the Sign button"
    expect(page.get_by_role("button", name="Sign: Approved")).to_be_focused()


# --------------------------------------------------------------------------- step controls (issue 15)


def open_task_id(eng, number: str) -> int:
    with eng.reader() as s:
        rec = eng.get(number, session=s)
        return s.execute(select(Task.id).where(Task.record_id == rec.id,
                                               Task.status == TaskStatus.OPEN)).scalar_one()


def test_a_held_step_is_shown_disabled_with_who_holds_it(page: Page, live) -> None:
    """R-UI-5 R-WF-11 R-WF-12: Quinn claimed QA's plan approval; Quentin sees the step
    disabled, with the reason naming Quinn, and no signature form is offered."""
    _, eng, _ = live
    number = capa_at_plan_approval(eng)
    tasks.claim(eng, open_task_id(eng, number), "quinn")
    log_in(page, "quentin")
    page.goto(f"/records/{number}")
    button = page.get_by_role("button", name="Approve action plan")
    expect(button).to_be_disabled()
    expect(page.locator("#why-approve_plan")).to_contain_text(
        "the task is held by Quinn QA (quinn); only they can complete it until they release "
        "or delegate it (rule: a claim holds).")
    expect(page.get_by_role("link", name=re.compile("Approve action plan"))).to_have_count(0)
    page.screenshot(path=str(SHOTS / "step-held-by-someone-else.png"), full_page=True)


def test_early_step_note_and_linked_records_on_the_record_page(page: Page, live) -> None:
    """R-UI-6 R-WF-14 R-WF-15 R-WF-13: after verification, the effectiveness check is offered
    with a note that it opens on its due date; closing waits for the related change request,
    listed with its state; the verifier sees Close CAPA disabled by separation of duties."""
    _, eng, _ = live
    number = capa_at_plan_approval(eng)
    verifier, eng.verifier = eng.verifier, VouchingVerifier()
    try:
        eng.fire(number, "approve_plan", "quinn", signature=VouchedSignature("quinn"))
        actions = [{**a, "done": True} for a in eng.get(number).data["actions"]]
        eng.fire(number, "complete_implementation", "olga",
                 {"implementation_summary": "Labels now printed at the line.",
                  "actions": actions})
        eng.fire(number, "verify", "quinn", {"verification_evidence": "SOP-12 v4 in use"},
                 signature=VouchedSignature("quinn"))
        give_training(eng, "quentin")  # closing requires training on the CAPA SOP
    finally:
        eng.verifier = verifier
    cr = eng.start("change_request", "emma", {
        "title": "Print labels at the line", "description": "Move label printing to line 3",
        "justification": "CAPA action", "change_type": "process", "owner": "olga",
        "related_capa": number}).number
    log_in(page, "quentin")
    page.goto(f"/records/{number}")
    expect(page.locator("#note-record_effectiveness")).to_contain_text(
        "Opens on 2026-05-31 00:00 UTC; taking it now needs a reason and is flagged as taken "
        "early.")
    page.screenshot(path=str(SHOTS / "step-early-note.png"), full_page=True)
    page.get_by_role("link", name="Record effectiveness check").click()
    page.get_by_label("Effectiveness result").select_option("effective")
    page.get_by_label("Effectiveness evidence").fill("No mix-up since the change.")
    page.get_by_label("Reason").fill("Line 3 is being decommissioned.")
    page.get_by_role("button", name="Record effectiveness check").click()
    expect(page.locator(".timeline")).to_contain_text("taken early (it opened on 2026-05-31)")
    waits = page.get_by_role("region", name="Close CAPA waits for")
    expect(waits).to_contain_text(cr)
    expect(waits).to_contain_text("Still open")
    page.screenshot(path=str(SHOTS / "step-waits-for-linked-records.png"), full_page=True)
    expect(page.get_by_role("button", name="Close CAPA")).to_be_disabled()
    expect(page.locator("#why-close")).to_contain_text("rule: parents wait for their children")


def test_request_a_due_date_extension_from_the_record_page(page: Page, live) -> None:
    """R-UI-7 R-WF-16 R-UI-50: the CAPA owner asks for a later due date from the record page; the
    record shows the request waiting, with the original and current due dates."""
    _, eng, _ = live
    number = capa_at_plan_approval(eng)
    log_in(page, "olga")
    page.goto(f"/records/{number}")
    due = page.get_by_role("region", name="Due date")
    expect(due).to_contain_text("Current: 2026-05-31")
    due.get_by_role("link", name="Request extension").click()
    page.get_by_label("New due date").fill("2026-06-30")
    page.get_by_label("Justification").fill("The label supplier delivers in June.")
    page.screenshot(path=str(SHOTS / "extension-request-form.png"), full_page=True)
    page.get_by_role("button", name="Request extension").click()
    expect(page.locator(".flash-success")).to_contain_text("is waiting for a decision by "
                                                           "Quality Assurance")
    due = page.get_by_role("region", name="Due date")
    # the requested date is a date-only deadline: shown as entered, no zone (R-UI-50)
    expect(due).to_contain_text("Requested: 2026-05-31 UTC → 2026-06-30")
    expect(due).to_contain_text("The label supplier delivers in June.")
    expect(due.get_by_role("link", name="Request extension")).to_have_count(0)
    page.screenshot(path=str(SHOTS / "extension-requested.png"), full_page=True)
