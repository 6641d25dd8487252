"""The KPI dashboard (webapp/views/dashboard.py): page, access, drill-down, CSV exports."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from tests.factories import sign
from tests.web.conftest import login
from workflow import clock


def _data(engine):
    """Two CAPAs (one closed after 20 days) and a deviation; signatures vouched for by the
    test (the web fixture's Part 11 verifier is swapped out meanwhile)."""
    from workflow.signatures.mac import VouchingVerifier

    verifier, engine.verifier = engine.verifier, VouchingVerifier()
    try:
        _build(engine)
    finally:
        engine.verifier = verifier


def _build(engine):
    for t in ("A", "B"):
        engine.start("capa", "emma", {"title": t, "description": "d"})
    n = "CAPA-2026-0001"
    engine.fire(n, "assign", "quinn", {"owner": "olga"})
    engine.fire(n, "submit_root_cause", "olga", {"root_cause_category": "method",
                                                 "root_cause": "rc"})
    engine.fire(n, "submit_plan", "olga", {"actions": [{"description": "x", "done": True}],
                                           "effectiveness_criteria": "c"})
    engine.fire(n, "approve_plan", "quinn", signature=sign("quinn"))
    engine.fire(n, "complete_implementation", "olga", {"implementation_summary": "s"})
    engine.fire(n, "verify", "quinn", {"verification_evidence": "e"}, signature=sign("quinn"))
    clock.advance(timedelta(days=20))
    engine.fire(n, "record_effectiveness", "quinn", {"effectiveness_result": "effective",
                                                     "effectiveness_evidence": "ok"})
    engine.fire(n, "close", "quinn", signature=sign("quinn"))
    day = clock.now().date().isoformat()
    engine.start("deviation", "emma", {"title": "Dev", "description": "d", "occurred_on": day,
                                       "discovered_on": day, "area": "A",
                                       "immediate_actions": "i"})


def _setup(engine, account):
    account("emma", "employee")
    account("olga", "capa_owner", "employee")
    account("quinn", "qa", "employee")
    _data(engine)


def test_dashboard_renders_tiles_and_svg_charts(client, account, engine):
    """R-P11-10d-1: the dashboard shows KPI tiles with numerator/denominator and inline SVG
    charts (no script, no CDN)."""
    _setup(engine, account)
    login(client, "quinn")
    r = client.get("/dashboard/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "Open CAPAs" in html and "Median days to closure" in html
    assert html.count("<svg") >= 3  # CAPA flow, deviations per month, gauge (+ security)
    assert "<script" not in html
    assert "/dashboard/drill/capa.open" in html
    assert "20.0 d" in html  # the closed CAPA took 20 days


def test_employee_is_refused(client, account, engine):
    """R-P11-10g-1: the dashboard needs qa, admin, isms or process_owner (403 otherwise)."""
    account("emma", "employee")
    login(client, "emma")
    assert client.get("/dashboard/").status_code == 403
    assert client.get("/dashboard/drill/capa.open").status_code == 403
    assert client.get("/dashboard/export.csv").status_code == 403


def test_process_owner_sees_no_security_section(client, account, engine):
    account("paul", "process_owner", "employee")
    login(client, "paul")
    html = client.get("/dashboard/").get_data(as_text=True)
    assert "Failed logins" not in html
    assert client.get("/dashboard/drill/sec.lockouts").status_code == 403


def test_drill_down_and_csv_exports(client, account, engine):
    """Each number drills down to its records; the metric table and the lists export as CSV."""
    _setup(engine, account)
    login(client, "quinn")
    html = client.get("/dashboard/drill/capa.open").get_data(as_text=True)
    assert "CAPA-2026-0002" in html and "CAPA-2026-0001" not in html
    r = client.get("/dashboard/drill/capa.closure_days?format=csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert [(x["number"], x["days"]) for x in rows] == [("CAPA-2026-0001", "20.00")]
    r = client.get("/dashboard/export.csv")
    table = {x["metric"]: x for x in csv.DictReader(io.StringIO(r.get_data(as_text=True)))}
    assert table["capa.open"]["value"] == "1" and table["dev.created"]["value"] == "1"
    assert table["capa.closure_days"]["numerator"] == "1"
    for name in ("deviations", "capa-flow", "training-documents", "security"):
        assert client.get(f"/dashboard/series/{name}.csv").status_code == 200, name
    assert client.get("/dashboard/drill/no.such").status_code == 404


def test_period_and_area_filters(client, account, engine):
    _setup(engine, account)
    login(client, "quinn")
    html = client.get("/dashboard/?from=2025-01&to=2025-02&workflow=capa").get_data(as_text=True)
    assert "Jan 2025 – Feb 2025" in html
    assert "Deviations reported" not in html
    assert client.get("/dashboard/?from=garbage").status_code == 400


def test_verify_now_stores_and_shows_the_result(client, account, engine):
    """R-A11-7-2: integrity verification runs on request and its result is shown."""
    account("quinn", "qa", "employee")
    login(client, "quinn")
    assert "No verification result" in client.get("/dashboard/").get_data(as_text=True)
    from tests.web.conftest import csrf

    token = csrf(client, "/dashboard/")
    r = client.post("/dashboard/verify", data={"csrf_token": token})
    assert r.status_code == 302
    html = client.get("/dashboard/").get_data(as_text=True)
    assert "Verified" in html and "chains" in html
