"""The operations pages in a real browser (issue 16): the 500 page with its reference, the
503 "Database unavailable" page, and the administrator's Retry all of undeliverable
messages. Screenshots in tests/e2e/screenshots/."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from werkzeug.serving import make_server

from tests.conftest import TEST_KEY
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, add_user, log_in
from tests.web.conftest import POLICY
from workflow import clock
from workflow.db.models import OutboxMessage
from workflow.engine.core import Engine
from workflow.signatures.part11 import Part11Verifier

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")

if CHROMIUM.exists():
    from playwright.sync_api import Page, expect, sync_playwright


@pytest.fixture
def site(committed_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[tuple[str, Engine, dict]]:
    from webapp import create_app

    monkeypatch.setenv("QMS_INSTANCE_DIR", str(tmp_path))
    eng = committed_engine
    eng.verifier = Part11Verifier(TEST_KEY, POLICY)
    totps = {"ada": add_user(eng, "ada", "Ada Admin", "admin", totp=True)}
    app = create_app({"SECRET_KEY": "e2e-secret", "QMS_ENGINE": eng, "QMS_POLICY": POLICY,
                      "PROPAGATE_EXCEPTIONS": False})

    @app.route("/_test/explode")
    def explode():  # noqa: ANN202 - an unexpected error (a bug)
        raise RuntimeError("kaput")

    @app.route("/_test/read-only")
    def read_only():  # noqa: ANN202 - what the driver raises on a read-only database file
        raise sa_exc.OperationalError("INSERT INTO audit_events ...", {},
                                      sqlite3.OperationalError(
                                          "attempt to write a readonly database"))

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", eng, totps
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@pytest.fixture
def page(site) -> Iterator[Page]:
    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                    headless=True)
        context = browser.new_context(base_url=site[0], viewport={"width": 1100, "height": 700})
        context.set_default_timeout(5000)
        yield context.new_page()
        context.close()
        browser.close()


def test_error_pages_give_the_reference_in_the_header_and_on_the_page(page: Page) -> None:
    """R-OPS-12 R-OPS-13: the 500 page names the request id (header X-Request-ID) as the
    reference to quote; the 503 page says the database is unavailable, nothing was changed,
    and gives the reference too."""
    resp = page.goto("/_test/explode")
    assert resp is not None and resp.status == 500
    rid = resp.headers["x-request-id"]
    expect(page.get_by_role("heading", name="Something went wrong")).to_be_visible()
    expect(page.get_by_text(f"tell your administrator the reference {rid}.")).to_be_visible()
    page.screenshot(path=str(SHOTS / "error-500-reference.png"), full_page=True)
    resp = page.goto("/_test/read-only")
    assert resp is not None and resp.status == 503
    rid = resp.headers["x-request-id"]
    expect(page.get_by_role("heading", name="Database unavailable")).to_be_visible()
    expect(page.get_by_text("The database is read-only at the moment")).to_be_visible()
    assert rid in page.content()
    page.screenshot(path=str(SHOTS / "error-503-database.png"), full_page=True)


def test_administrator_retries_all_undeliverable_messages(page: Page, site) -> None:
    """R-OPS-20: the Undeliverable messages page has one Retry all button; after it the list
    is empty and every message is queued again."""
    _, eng, totps = site
    with eng.unit() as s:
        for i, err in enumerate(["ConnectionRefusedError: [Errno 111] Connection refused",
                                 "SMTPRecipientsRefused: {'x@example.com': (550, b'unknown')}",
                                 "no active holder of the role nobody_role"]):
            s.add(OutboxMessage(created_at=clock.now(), recipient_role="nobody_role",
                                subject=f"Undeliverable {i + 1}", body="", status="dead",
                                attempts=5, last_error=err))
    log_in(page, "ada", totps["ada"])
    page.goto("/admin/notifications/dead")
    expect(page.get_by_role("heading", name="Undeliverable messages")).to_be_visible()
    expect(page.get_by_role("button", name="Retry all")).to_be_visible()
    page.screenshot(path=str(SHOTS / "dead-letters-retry-all.png"), full_page=True)
    page.get_by_role("button", name="Retry all").click()
    expect(page.get_by_text(re.compile(r"3 messages queued again"))).to_be_visible()
    expect(page.get_by_text("No undeliverable messages.")).to_be_visible()
    page.screenshot(path=str(SHOTS / "dead-letters-after-retry-all.png"), full_page=True)
    with eng.reader() as s:
        assert {m.status for m in s.execute(select(OutboxMessage)).scalars()} == {"pending"}


def test_a_misspelt_time_zone_is_refused_on_the_new_user_form(page: Page, site) -> None:
    """R-OPS-10: the new-user form proposes the installation's time zone; "Europe/Pari" is
    refused with the nearest names and no account is created."""
    _, eng, totps = site
    log_in(page, "ada", totps["ada"])
    page.goto("/admin/users")
    expect(page.get_by_label("Time zone")).to_have_value("UTC")
    page.get_by_label("Username").fill("zoe")
    page.get_by_label("Printed full name").fill("Zoe Analyst")
    page.get_by_label("Time zone").fill("Europe/Pari")
    page.get_by_label("Reason").fill("new hire HR-1234")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_text(re.compile(r"did you mean Europe/Paris"))).to_be_visible()
    page.screenshot(path=str(SHOTS / "new-user-time-zone-refused.png"), full_page=True)
    from workflow.identity import users as identity

    with eng.reader() as s:
        assert identity.find_user(s, "zoe") is None
