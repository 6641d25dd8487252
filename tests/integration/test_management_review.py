"""The half-yearly management review (definitions/management_review.yaml): opened by the
scheduler once per half-year with its inputs frozen at opening, minutes and actions approved
by top management and QA."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from tests.factories import sign
from tests.integration.test_risk_assessment import open_ra
from workflow import clock
from workflow.audit import integrity
from workflow.db.models import Record, Signature
from workflow.errors import GuardFailed, RecordNotFound, ValidationFailed
from workflow.kpi import Kpi, Period
from workflow.queries import review_pdf
from workflow.scheduling.jobs import default_jobs
from workflow.scheduling.schedules import load_schedules_text
from workflow.scheduling.service import run_due

JOBS = default_jobs()
HALF_YEARLY = """
schedules:
  mr:
    job: periodic_record
    cron: "0 6 2 1,7 *"
    period: half_year
    params: {workflow: management_review, title: "Management review {period}"}
"""


@pytest.fixture
def board(make_user):
    return make_user("tom", "top_management", "employee", full_name="Tom Top")


def open_review(engine, people):
    """Some quality data in March 2026, then the July run opens the review of 2026-H1."""
    engine.start("capa", people["emp"], {"title": "Label mix-up", "description": "At QC."})
    open_ra(engine, people)  # one high risk (score 50), one medium
    clock.set(datetime(2026, 7, 2, 6, 30, tzinfo=UTC))
    schedules = load_schedules_text(HALF_YEARLY, jobs=JOBS)
    assert run_due(engine, schedules, jobs=JOBS) == [
        "mr [2026-H2]: opened ['MR-2026-0001'], covers 2026-H1"]
    return engine.get("MR-2026-0001")


def test_scheduler_opens_one_review_whose_snapshot_matches_the_kpis_and_stays_frozen(
        engine, people):
    """R-MR-1 R-MR-2 R-MR-3: the scheduler opens one review per half-year for the half-year
    just ended; its KPI snapshot equals the KPI calculator's figures for that period (as a
    QA viewer sees them on the dashboard), with the period before as trend; the open high
    risks are listed; later changes of the records do not alter the snapshot."""
    mr = open_review(engine, people)
    assert (mr.data["period_from"], mr.data["period_to"]) == ("2026-01-01", "2026-06-30")
    assert mr.title == "Management review 2026-H1"
    assert mr.data["snapshot_taken_at"] == "2026-07-02T06:30:00+00:00"
    snap = {r["key"]: r for r in mr.data["kpi_snapshot"]}
    with engine.reader() as s:
        k = Kpi(s, engine.registry, people["qa"],
                Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)))
        dashboard = k.metrics()
    assert set(dashboard) <= set(snap)  # and the declared KPIs
    for key, m in dashboard.items():
        assert snap[key]["value"] == m.display, key
    assert [(r["hazard"], r["score"]) for r in mr.data["high_risks"]] == [
        ("Audit trail can be switched off", 50)]
    # once per period: a second run opens nothing
    schedules = load_schedules_text(HALF_YEARLY, jobs=JOBS)
    assert run_due(engine, schedules, jobs=JOBS) == []
    # later changes to the records it was taken from do not alter it
    frozen = engine.get(mr.number).data
    engine.start("capa", people["emp"], {"title": "Another", "description": "Later."})
    open_ra(engine, people, risks=[{"hazard": "New risk", "severity": 5, "occurrence": 5,
                                    "detection": 5}])
    assert engine.get(mr.number).data == frozen


def test_a_tampered_snapshot_is_named_by_verify_audit(engine, people):
    """R-MR-4: the snapshot is record content: changing it in the database behind the
    engine's back is found by verify-audit."""
    mr = open_review(engine, people)
    with engine.reader() as s:
        assert integrity.verify(s, engine.signing_key).ok
    data = dict(mr.data)
    data["kpi_snapshot"] = [{**r, "value": "0"} for r in data["kpi_snapshot"]]
    with engine.unit() as s:
        s.execute(update(Record).where(Record.id == mr.id).values(data=data))
    with engine.reader() as s:
        found = integrity.verify(s, engine.signing_key).problems
    assert any(mr.number in str(p) for p in found), found


def test_signing_before_the_minutes_are_complete_is_refused(engine, people, board):
    """R-MR-5 R-MR-6 R-MR-7: approving without minutes and decisions, or with an action
    lacking its owner and due date, is refused and nothing is written; the review needs
    top management's and QA's signatures; a CAPA action creates a linked CAPA."""
    mr = open_review(engine, people)
    engine.fire(mr.number, "hold_meeting", people["qa"],
                {"meeting_date": "2026-07-10", "attendees": [board, people["qa"]]})
    before = engine.get(mr.number)
    with pytest.raises(ValidationFailed, match="minutes"):
        engine.fire(mr.number, "approve", board, signature=sign(board))
    with pytest.raises(GuardFailed, match="minutes are not complete"):
        engine.fire(mr.number, "approve", board, {
            "minutes": "KPIs reviewed.", "decisions": "QMS suitable.",
            "actions": [{"description": "Retrain QC", "type": "action"}]},
            signature=sign(board))
    after = engine.get(mr.number)
    assert (after.version, after.data) == (before.version, before.data)
    with engine.reader() as s:
        assert not s.execute(select(Signature).where(Signature.record_id == mr.id)).first()
    minutes = {"minutes": "KPIs and high risks reviewed.", "decisions": "QMS suitable.",
               "actions": [{"description": "Retrain QC", "type": "action",
                            "owner": people["owner"], "due": "2026-09-30"},
                           {"description": "Remove audit-trail switch", "type": "capa",
                            "owner": people["owner"]}]}
    r = engine.fire(mr.number, "approve", board, minutes, signature=sign(board))
    assert (r.moved, r.signatures_needed) == (False, 1)
    r = engine.fire(mr.number, "approve", people["qa"], signature=sign(people["qa"]))
    assert r.state == "follow_up"
    actions = engine.get(mr.number).data["actions"]
    capa = engine.get(actions[1]["capa"])
    assert capa.data["source"] == "management_review"
    with pytest.raises(GuardFailed, match="Every action must be done"):
        engine.fire(mr.number, "close", people["qa"])
    first_done = [{**actions[0], "done": True}, actions[1]]
    r = engine.fire(mr.number, "update_actions", board, {"actions": first_done})
    assert r.state == "follow_up" and engine.get(mr.number).data["actions"][0]["done"]
    assert engine.get(mr.number).data["actions"][1]["capa"] == capa.number  # no second CAPA
    done = [{**a, "done": True} for a in actions]
    assert engine.fire(mr.number, "close", people["qa"], {"actions": done}).state == "closed"
    with engine.reader() as s:
        assert integrity.verify(s, engine.signing_key).ok


def test_the_next_review_lists_the_open_actions_of_the_last(engine, people, board):
    """R-MR-3: the previous review's actions still open are an input of the next one."""
    mr = open_review(engine, people)
    engine.fire(mr.number, "hold_meeting", people["qa"],
                {"meeting_date": "2026-07-10", "attendees": [board]})
    engine.fire(mr.number, "approve", board, {
        "minutes": "m", "decisions": "d", "actions": [
            {"description": "Retrain QC", "type": "action", "owner": people["owner"],
             "due": "2026-09-30"}]}, signature=sign(board))
    engine.fire(mr.number, "approve", people["qa"], signature=sign(people["qa"]))
    nxt = engine.start("management_review", people["qa"], {
        "title": "Extra review", "period_from": "2026-07-01", "period_to": "2026-09-30"})
    assert engine.get(nxt.number).data["previous_actions"] == [
        {"review": mr.number, "action": "Retrain QC", "owner": people["owner"],
         "due": "2026-09-30"}]



def test_the_review_report_pdf_renders_with_its_kpi_charts(engine, people, board, tmp_path):
    """R-MR-8: the frozen inputs print as a PDF report with KPI charts (this period against
    the one before), the high risks and the review's outcome; pdftoppm renders its pages."""
    mr = open_review(engine, people)
    with engine.reader() as s:
        pdf = review_pdf.review_report(s, engine, mr.number, people["qa"])
    assert pdf.startswith(b"%PDF")
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-r", "50", "-png", str(path), str(tmp_path / "page")],
                       check=True, timeout=60)
        assert sorted(tmp_path.glob("page*.png"))
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True,
                              check=True, timeout=60).stdout
        assert "Audit trail can be switched off" in text and "Open high risks" in text
    with engine.reader() as s, pytest.raises(RecordNotFound):
        review_pdf.review_report(s, engine, mr.number, people["emp"])  # not visible to emma
