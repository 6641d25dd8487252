"""The KPI dashboard (webapp/views/dashboard.py): page, access, drill-down, CSV exports."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

from tests.factories import give_training, sign
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
                                                     "effectiveness_evidence": "ok"},
                reason="judged before its due date (R-WF-14)")
    # the closer is not the verifier (separation of duties, R-WF-13)
    give_training(engine, "quentin")  # closing requires training on the CAPA SOP
    engine.fire(n, "close", "quentin", signature=sign("quentin"))
    day = clock.now().date().isoformat()
    engine.start("deviation", "emma", {"title": "Dev", "description": "d", "occurred_on": day,
                                       "discovered_on": day, "area": "A",
                                       "immediate_actions": "i"})


def _setup(engine, account):
    account("emma", "employee")
    account("olga", "capa_owner", "employee")
    account("quinn", "qa", "employee")
    account("quentin", "qa", "employee")
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
    # the charts need no script: the only one is the site's idle-timeout warning (static)
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/session.js" defer>']
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


def test_declared_kpis_on_the_dashboard_with_drill_down_and_csv(client, account, engine):
    """R-KPI-4: the KPIs deviation.yaml declares are tiles of the deviation section, their
    groups drill down to the records, and they are in the CSV export."""
    _setup(engine, account)
    login(client, "quinn")
    html = client.get("/dashboard/?workflow=deviation").get_data(as_text=True)
    assert "Reported by classification" in html and "Triaged within 2 days" in html
    assert "/dashboard/drill/deviation.by_classification?" in html
    assert html.count('id="sec-deviation"') == 1
    r = client.get("/dashboard/drill/deviation.by_classification?group=%28none%29&format=csv")
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert [x["number"] for x in rows] == ["DEV-2026-0001"]
    assert client.get("/dashboard/drill/deviation.by_classification?group=major"
                      ).get_data(as_text=True).count("DEV-2026-0001") == 0
    table = {x["metric"]: x for x in csv.DictReader(io.StringIO(
        client.get("/dashboard/export.csv").get_data(as_text=True)))}
    assert table["deviation.open"]["value"] == "1"
    assert table["deviation.by_classification"]["value"] == "1"
    assert client.get("/dashboard/drill/deviation.nope").status_code == 404


VERIFY_SCHEDULES = """
schedules:
  verify_audit_requests:
    job: verify_audit_requests
    every: minute
"""


def _scheduler_tick(engine):
    from workflow.scheduling.jobs import default_jobs
    from workflow.scheduling.schedules import load_schedules_text
    from workflow.scheduling.service import run_due

    jobs = default_jobs()
    return run_due(engine, load_schedules_text(VERIFY_SCHEDULES, jobs=jobs), jobs=jobs)


def test_verify_now_queues_a_run_the_scheduler_completes(client, account, engine):
    """R-SEC-40 R-A11-7-2: *Verify now* returns at once with a queued run (the verification
    never runs inside the request); the scheduler's next tick runs it, the progress is
    polled as JSON and the stored result is shown."""
    from tests.web.conftest import csrf
    from workflow.db.models import JobRun

    account("quinn", "qa", "employee")
    login(client, "quinn")
    assert "No verification result" in client.get("/dashboard/").get_data(as_text=True)
    r = client.post("/dashboard/verify", data={"csrf_token": csrf(client, "/dashboard/")})
    assert r.status_code == 303 and r.headers["Location"].endswith("#sec-integrity")
    with engine.reader() as s:
        (run,) = s.query(JobRun).filter_by(job="verify_audit").all()
        assert (run.status, run.finished_at) == ("queued", None)  # nothing verified yet
        run_id = run.id
    html = client.get("/dashboard/").get_data(as_text=True)
    assert "Verification queued (run #" in html and "Queued</strong>" in html
    assert "verify_progress.js" in html and "<script>" not in html  # CSP: no inline script
    assert client.get(f"/dashboard/verify/{run_id}.json").get_json()["status"] == "queued"
    # a second click while it is queued does not queue another run
    r = client.post("/dashboard/verify", data={"csrf_token": csrf(client, "/dashboard/")})
    assert "already queued or running" in client.get("/dashboard/").get_data(as_text=True)
    with engine.reader() as s:
        assert s.query(JobRun).filter_by(job="verify_audit").count() == 1

    lines = _scheduler_tick(engine)
    assert any(f"run #{run_id}: OK" in line for line in lines), lines
    status = client.get(f"/dashboard/verify/{run_id}.json").get_json()
    assert status["status"] == "done" and status["ok"] is True and status["finished"]
    assert status["checked"] == status["total"] > 0
    html = client.get("/dashboard/").get_data(as_text=True)
    assert "Verified" in html and f"run #{run_id}, web:quinn" in html
    assert "verify_progress.js" not in html  # nothing left to poll
    assert _scheduler_tick(engine) == []  # nothing queued: the tick does nothing
    assert client.get("/dashboard/verify/999999.json").status_code == 404


def test_failed_background_verification_is_shown_raised_and_sent_to_security(
        client, account, engine, monkeypatch):
    """R-SEC-41 R-P11-10e-4 R-A11-12-1: a role grant changed with SQL behind the application's
    back: the queued run fails, the dashboard lists the problem, an integrity_check_failed
    security event is on the system chain and the security role (QMS_SECURITY_ROLE) gets a
    message."""
    from sqlalchemy import text

    from tests.web.conftest import csrf
    from workflow.db.models import AuditEvent, OutboxMessage

    monkeypatch.setenv("QMS_SECURITY_ROLE", "isms")
    account("quinn", "qa", "employee")
    login(client, "quinn")
    with engine.unit() as s:
        s.execute(text("UPDATE role_grants SET role = 'admin' WHERE role = 'employee'"))
    client.post("/dashboard/verify", data={"csrf_token": csrf(client, "/dashboard/")})
    (line,) = _scheduler_tick(engine)
    assert "FAILED" in line and "role grant" in line
    html = client.get("/dashboard/").get_data(as_text=True)
    assert "FAILED" in html and "integrity-problems" in html
    assert "role grant #" in html and "seal" in html
    with engine.reader() as s:
        (ev,) = s.query(AuditEvent).filter_by(chain="system",
                                               action="integrity_check_failed").all()
        assert ev.changes["requested_by"] == "web:quinn" and ev.changes["problems"] >= 1
        assert "seal" in ev.changes["kinds"]
        (msg,) = s.query(OutboxMessage).filter_by(kind="integrity_check_failed").all()
        assert msg.recipient_role == "isms" and "FAILED" in msg.subject
        assert "role grant #" in msg.body


def test_only_qa_and_admin_may_queue_a_verification(client, account, engine):
    """R-SEC-40 R-P11-10d-1: a process owner sees the dashboard but may not queue a run."""
    from tests.web.conftest import csrf
    from workflow.db.models import JobRun

    account("paula", "process_owner", "employee")
    login(client, "paula")
    html = client.get("/dashboard/").get_data(as_text=True)
    assert "Verify now" not in html
    r = client.post("/dashboard/verify", data={"csrf_token": csrf(client, "/dashboard/")})
    assert r.status_code == 403
    with engine.reader() as s:
        assert s.query(JobRun).filter_by(job="verify_audit").count() == 0

