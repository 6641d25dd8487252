"""The training matrix in a real browser (headless Chromium, issue 19): the training
coordinator opens the matrix, sees each person's status on the effective version, filters
by status and drills down to a document's page. Documents are records of the small test
workflow of tests/integration/test_training_matrix.py."""

from __future__ import annotations

import pytest

from tests.e2e.test_browser import CHROMIUM, SHOTS, add_user, browser  # noqa: F401
from tests.e2e.test_people_browser import live, log_in, new_page, no_console_errors  # noqa: F401
from tests.integration.test_training_matrix import DOC, curriculum, doc_version
from workflow.identity import users as identity
from workflow.signatures.mac import VouchingVerifier
from workflow.spec.load import load_text

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")

if CHROMIUM.exists():
    from playwright.sync_api import expect


def test_the_matrix_in_the_browser(browser, live):  # noqa: F811
    """R-TRN-14 R-TRN-12: the coordinator sees people x documents with each status, filters
    the overdue-free matrix to what is due, opens a document's page from its column, and the
    page runs without script or CSP errors."""
    base, eng = live
    add_user(eng, "tina", "Tina Trainer", "training_coordinator", "trainer", "employee")
    add_user(eng, "quinn", "Quinn QA", "qa", "employee")
    with eng.unit() as s:
        eng.registry.publish(s, load_text(DOC, "test_doc.yaml"), identity.system_user(s))
    verifier, eng.verifier = eng.verifier, VouchingVerifier()
    try:
        doc_version(eng, "SOP-CAPA-001", 1, effective_in=0)
        curriculum(eng, "capa_owner", ("SOP-CAPA-001", "read_and_understood"))
    finally:
        eng.verifier = verifier
    page = new_page(browser, base, width=1400)
    errors = no_console_errors(page)
    log_in(page, "tina")
    page.get_by_role("link", name="Training matrix").click()
    expect(page.get_by_role("heading", name="Training matrix")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Olga Owner")
    expect(row).to_contain_text("Due")
    expect(page.get_by_role("row").filter(has_text="Emma Employee")).to_contain_text("·")
    page.screenshot(path=str(SHOTS / "training-matrix.png"), full_page=True)
    page.get_by_label("Status").select_option("due")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("row").filter(has_text="Emma Employee")).to_have_count(0)
    page.get_by_role("link", name="SOP-CAPA-001").first.click()
    expect(page.get_by_role("heading", name="SOP-CAPA-001")).to_be_visible()
    expect(page.locator("section").filter(has_text="Not trained on the effective version")
           ).to_contain_text("olga")
    assert errors == []
