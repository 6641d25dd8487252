"""The risk register page, its CSV, and the management review's report download."""

from __future__ import annotations

from tests.web.conftest import csrf, login


def test_risk_register_page_and_csv(client, account, engine):
    """R-RSK-9: the page lists the risks by priority with filters; the CSV holds the same
    rows; a person without a risk role is not offered the page in the menu."""
    account("quinn", "qa", "employee")
    account("emma", "employee")
    engine.start("risk_assessment", "emma", {
        "title": "QMS", "scope": "s", "risks": [
            {"hazard": "Shared accounts", "severity": 4, "occurrence": 2, "detection": 2},
            {"hazard": "Audit trail off", "severity": 5, "occurrence": 2, "detection": 5}]})
    login(client, "quinn")
    page = client.get("/risks").get_data(as_text=True)
    assert page.index("Audit trail off") < page.index("Shared accounts")
    assert ">Risks</a>" in page and "without treatment" in page
    high = client.get("/risks?priority=high").get_data(as_text=True)
    assert "Audit trail off" in high and "Shared accounts" not in high
    r = client.get("/risks?format=csv")
    assert r.mimetype == "text/csv"
    lines = r.get_data(as_text=True).splitlines()
    assert lines[0].startswith("Assessment,Risk,") and len(lines) == 3
    assert ",50,high," in lines[1]


def test_review_report_download(client, account, engine):
    """R-MR-8: the record page offers the report of a management review; it downloads as
    PDF; a record without frozen inputs has none."""
    account("quinn", "qa", "employee")
    r = engine.start("management_review", "quinn", {
        "title": "MR", "period_from": "2026-01-01", "period_to": "2026-02-28"})
    login(client, "quinn")
    assert "Review report (PDF)" in client.get(f"/records/{r.number}").get_data(as_text=True)
    pdf = client.get(f"/records/{r.number}/review-report.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    capa = engine.start("capa", "quinn", {"title": "t", "description": "d"})
    assert client.get(f"/records/{capa.number}/review-report.pdf").status_code == 404


def test_gap_analysis_from_the_register_page(client, app, account, engine):
    """R-RSK-11: the register page starts a gap analysis pre-filled from the catalogue; a
    person who may not start one gets a clear message and nothing is created."""
    account("rita", "risk_owner")
    account("emma", "employee")
    login(client, "emma")
    r = client.post("/risks/gap-analysis", data={
        "title": "Gaps", "framework": ["iso27001"], "csrf_token": csrf(client, "/risks")},
        follow_redirects=True)
    assert "Starting a Gap Analysis needs one of the roles" in r.get_data(as_text=True)
    client = app.test_client()
    login(client, "rita")
    r = client.post("/risks/gap-analysis", data={
        "title": "ISO gaps", "framework": ["iso27001"], "csrf_token": csrf(client, "/risks")})
    assert r.status_code == 302 and "/records/GAP-2026-0001" in r.headers["Location"]
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "R-ISO-1" in page


def test_new_risk_assessment_form_shows_computed_columns_read_only(client, account, engine):
    """R-RSK-2: the form offers the risks table; score and priority are read-only (the
    engine computes them), a value posted for them is ignored."""
    account("rita", "risk_owner")
    login(client, "rita")
    page = client.get("/records/new/risk_assessment")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="risks-0-score"' in html and "readonly" in html.split('name="risks-0-score"')[1][:200] \
        or "readonly" in html.split('name="risks-0-score"')[0][-200:]
