"""Periodic reviews and reminders opened by the scheduler (issue 5): the monthly audit-trail
review of critical records (R-A11-9-2), the yearly review of each published workflow
definition by its process owner, password-expiry reminders, and the notification kinds that
pick the message templates. Each exactly once per period (R-WF-8), also after downtime.

Time travels with workflow.clock; nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from notifications.dispatcher import dispatch
from notifications.render import render
from tests.conftest import T0
from tests.factories import sign
from tests.integration.test_scheduling import opened_once, race
from workflow import clock
from workflow.audit import trail as audit
from workflow.db.models import (
    AuditEvent,
    DefinitionVersion,
    Notification,
    OutboxMessage,
    Record,
    Signature,
    Task,
)
from workflow.errors import (
    GuardFailed,
    LoginFailed,
    PopulationFixed,
    RecordNotFound,
    SegregationOfDuties,
)
from workflow.identity import passwords, sessions
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.scheduling.jobs import default_jobs
from workflow.scheduling.schedules import load_schedules_text
from workflow.scheduling.service import run_due

JOBS = default_jobs()

MONTHLY = """
schedules:
  atr:
    job: audit_trail_review
    cron: "0 5 1 * *"
    period: month
"""

YEARLY = """
schedules:
  dr:
    job: definition_review
    cron: "0 6 * * *"
    period: day
    params: {interval: 365d}
"""

PASSWORDS = """
schedules:
  pw:
    job: password_expiry_reminders
    cron: "0 8 * * *"
    period: day
    params: {days: 14}
"""


def numbers(engine, workflow):
    with engine.reader() as s:
        return s.execute(select(Record.number).where(Record.workflow_key == workflow)
                         .order_by(Record.id)).scalars().all()


def capa_to_implementation(engine, people):
    """A CAPA (risk high) taken through a signed plan approval, an hour between steps."""
    r = engine.start("capa", people["emp"], {"title": "Label mix-up", "description": "QC"})
    steps = [
        ("assign", people["qa"], {"owner": people["owner"]}, None),
        ("submit_root_cause", people["owner"],
         {"root_cause_category": "method", "root_cause": "x"}, None),
        ("submit_plan", people["owner"], {
            "actions": [{"description": "a", "responsible": people["owner"], "done": True}],
            "effectiveness_criteria": "c", "effectiveness_check_days": 30}, None),
        ("approve_plan", people["qa2"], {}, sign(people["qa2"])),
    ]
    for name, who, data, signature in steps:
        clock.advance(timedelta(hours=1))
        engine.fire(r.number, name, who, data, signature=signature)
    return engine.get(r.number)


def signature_failure(engine, username):
    with engine.unit() as s:
        audit.system_event(s, at=clock.now(), actor=identity.get_user(s, username),
                           action="signature_failed",
                           changes={"username": username, "detail": "wrong password"})


# ------------------------------------------------------------------ audit-trail review


def test_monthly_audit_trail_review_lists_the_critical_records_events(engine, people,
                                                                      make_user):
    """R-A11-9-2 R-WF-8 R-P11-10h-1: once a month QA gets one review listing, per critical
    record (risk: high), the audit events of the month before: count, first and last,
    signatures; records of lower-risk workflows are not listed; failed signatures and other
    security events of the system audit trail are. Nothing twice in the same month."""
    schedules = load_schedules_text(MONTHLY, jobs=JOBS)
    # 2026-03-02: the March occurrence opens the review of February (nothing happened then)
    assert run_due(engine, schedules, jobs=JOBS) == ["atr [2026-03]: opened ['ATR-2026-0001']"]
    feb = engine.get("ATR-2026-0001")
    assert (feb.data["window_from"], feb.data["window_to"]) == (
        "2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00")
    assert feb.data.get("records", []) == [] and feb.data["signature_failures"] == 0

    capa = capa_to_implementation(engine, people)  # 2026-03-02 09:00 to 13:00
    make_user("tina", "training_coordinator", "employee")
    engine.start("training_assignment", "tina", {  # risk: medium, not listed
        "title": "SOP-1", "document": "SOP-1", "document_version": "1",
        "trainee": people["emp"], "due_date": "2026-03-20"})
    signature_failure(engine, people["qa"])
    clock.set(datetime(2026, 4, 1, 4, 0, tzinfo=UTC))  # April: in the next review
    engine.fire(capa.number, "complete_implementation", people["owner"],
                {"implementation_summary": "done"})
    clock.set(datetime(2026, 4, 1, 5, 0, tzinfo=UTC))
    assert run_due(engine, schedules, jobs=JOBS) == ["atr [2026-04]: opened ['ATR-2026-0002']"]
    clock.advance(timedelta(hours=3))
    assert run_due(engine, schedules, jobs=JOBS) == []  # same month: nothing more
    assert numbers(engine, "audit_trail_review") == ["ATR-2026-0001", "ATR-2026-0002"]

    march = engine.get("ATR-2026-0002")
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    with engine.reader() as s:
        events = s.execute(select(AuditEvent).where(
            AuditEvent.record_id == capa.id, AuditEvent.at >= start, AuditEvent.at < end)
            .order_by(AuditEvent.seq)).scalars().all()
        assert s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.record_id == capa.id, AuditEvent.at >= end)).scalar_one() > 0
    assert march.data["records"] == [{
        "record": capa.number, "workflow": "capa", "events": len(events),
        "first_event": "2026-03-02T09:00:00+00:00", "last_event": "2026-03-02T13:00:00+00:00",
        "signatures": 1, "transitions": sum(e.action == "transition" for e in events),
        "changes": sum(e.action == "update" for e in events)}]
    assert march.data["records_listed"] == 1
    assert march.data["signature_failures"] == 1
    security = {e["action"]: e for e in march.data["security_events"]}
    assert security["signature_failed"]["events"] == 1
    assert security["user_created"]["events"] == 6  # the five people and tina
    assert set(security) <= set(audit_actions := {
        "login_failed", "signature_failed", "account_locked", "account_unlocked",
        "password_reset", "role_granted", "role_revoked", "user_created", "user_deactivated",
        "totp_reset", "definition_published", "api_token_created", "api_token_revoked"}), \
        audit_actions
    with engine.reader() as s:
        reasons = {e.reason for e in s.execute(select(AuditEvent).join(Record).where(
            Record.number == "ATR-2026-0002")).scalars()}
        assert reasons == {"scheduled job atr (audit_trail_review), period 2026-04"}
        (task,) = s.execute(select(Task).join(Record).where(
            Record.number == "ATR-2026-0002")).scalars()
        assert (task.role, task.due_at) == ("qa", clock.now() - timedelta(hours=3)
                                            + timedelta(days=14))


def test_signed_audit_trail_review_closes(engine, people):
    """R-A11-9-2: QA attests every listed record (a finding needs a comment and the
    follow-up) and signs "Audit trail reviewed"; the review closes."""
    capa_to_implementation(engine, people)
    clock.set(datetime(2026, 4, 1, 5, 0, tzinfo=UTC))
    run_due(engine, load_schedules_text(MONTHLY, jobs=JOBS), jobs=JOBS)
    number = numbers(engine, "audit_trail_review")[-1]
    rows = engine.get(number).data["records"]
    assert len(rows) == 1
    with pytest.raises(GuardFailed, match="Every listed record needs an attestation"):
        engine.fire(number, "sign_review", people["qa"], {"records": rows},
                    signature=sign(people["qa"]))
    # the listed records are a generated population: none can be dropped (R-WF-23)
    with pytest.raises(PopulationFixed, match="rows cannot be added or removed"):
        engine.fire(number, "sign_review", people["qa"], {"records": []},
                    signature=sign(people["qa"]))
    finding = [{**rows[0], "decision": "finding"}]
    with pytest.raises(GuardFailed, match="Every finding needs a comment"):
        engine.fire(number, "sign_review", people["qa"], {"records": finding},
                    signature=sign(people["qa"]))
    finding[0]["comment"] = "plan approved 4 h after submission, outside SOP window"
    with pytest.raises(GuardFailed, match="Describe the findings"):
        engine.fire(number, "sign_review", people["qa"], {"records": finding},
                    signature=sign(people["qa"]))
    with pytest.raises(RecordNotFound):  # not QA: the review is not even visible
        engine.fire(number, "sign_review", people["emp"], {"records": finding},
                    signature=sign(people["emp"]))
    engine.fire(number, "sign_review", people["qa"],
                {"records": finding, "findings": "Deviation DEV-2026-0001 raised."},
                signature=sign(people["qa"]))
    rec = engine.get(number)
    assert (rec.state, rec.outcome) == ("closed", "done")
    with engine.reader() as s:
        (sig,) = s.execute(select(Signature).where(Signature.record_id == rec.id)).scalars()
        assert sig.meaning == "Audit trail reviewed"


def test_audit_trail_review_after_downtime_covers_everything_since_the_last(engine, people):
    """R-A11-9-2 R-WF-8: a scheduler down from April to mid-July opens one review (not
    three) whose window starts where the last review ended, so no event goes unreviewed."""
    schedules = load_schedules_text(MONTHLY, jobs=JOBS)
    clock.set(datetime(2026, 4, 1, 5, 0, tzinfo=UTC))
    run_due(engine, schedules, jobs=JOBS)
    clock.set(datetime(2026, 5, 20, 9, 0, tzinfo=UTC))
    capa = capa_to_implementation(engine, people)
    clock.set(datetime(2026, 7, 15, 12, 0, tzinfo=UTC))
    assert run_due(engine, schedules, jobs=JOBS) == ["atr [2026-07]: opened ['ATR-2026-0002']"]
    for _ in range(3):
        clock.advance(timedelta(minutes=1))
        assert run_due(engine, schedules, jobs=JOBS) == []
    rec = engine.get("ATR-2026-0002")
    assert (rec.data["window_from"], rec.data["window_to"]) == (
        "2026-04-01T00:00:00+00:00", "2026-07-01T00:00:00+00:00")
    assert [r["record"] for r in rec.data["records"]] == [capa.number]


@pytest.mark.committed
def test_two_schedulers_open_one_audit_trail_review(committed_engine):
    """R-WF-8: four schedulers racing (threads, real commits) open one review per month."""
    schedules = load_schedules_text(MONTHLY, jobs=JOBS)
    results = race(4, lambda i: run_due(committed_engine, schedules, jobs=JOBS,
                                        use_leader_lock=False))
    assert numbers(committed_engine, "audit_trail_review") == ["ATR-2026-0001"]
    opened_once(results, ["ATR-2026-0001"])


# ------------------------------------------------------------------ definition review


def _open_all_first_reviews(engine, schedules) -> dict[str, datetime]:
    """Run the daily schedule month by month through the first year after publication (T0);
    returns when each definition's first review was opened."""
    opened_at: dict[str, datetime] = {}
    for month in range(1, 13):
        clock.set(T0 + timedelta(days=30.5 * month))
        run_due(engine, schedules, jobs=JOBS)
        with engine.reader() as s:
            for r in s.execute(select(Record).where(Record.workflow_key == "definition_review")
                               ).scalars():
                opened_at.setdefault(r.data["definition"], clock.now())
    return opened_at


def test_yearly_review_of_each_published_definition_goes_to_its_process_owner(
        engine, people, make_user):
    """R-WF-8 R-P11-10h-1 R-OPS-17: one definition_review per published definition key and
    interval, its task and message to that definition's process-owner role. Definitions
    published minutes ago are not due; the first reviews are spread over the second half of
    the first year, not opened all at once; each opens once per interval."""
    schedules = load_schedules_text(YEARLY, jobs=JOBS)
    with engine.reader() as s:
        keys = sorted(set(s.execute(select(DefinitionVersion.key)).scalars()))
    assert run_due(engine, schedules, jobs=JOBS) == []  # T0: published minutes ago
    clock.set(T0 + timedelta(days=180))
    assert run_due(engine, schedules, jobs=JOBS) == []  # less than half a year
    opened_at = _open_all_first_reviews(engine, schedules)
    assert sorted(opened_at) == keys  # all within the first year, each once
    per_month = [sum(1 for t in opened_at.values() if t == T0 + timedelta(days=30.5 * m))
                 for m in range(1, 13)]
    assert max(per_month) < len(keys) / 2, per_month  # spread, not all at once
    assert sum(1 for n in per_month if n) >= 4, per_month
    with engine.reader() as s:
        reviews = s.execute(select(Record).where(Record.workflow_key == "definition_review")
                            .order_by(Record.id)).scalars().all()
        assert sorted(r.data["definition"] for r in reviews) == keys
        by_key = {r.data["definition"]: r for r in reviews}
        owners = {}
        for key, r in by_key.items():
            (task,) = s.execute(select(Task).where(Task.record_id == r.id)).scalars()
            owners[key] = task.role
            assert r.data["owner_role"] == task.role
            msg = s.execute(select(OutboxMessage).where(OutboxMessage.record_id == r.id)
                            ).scalar_one()
            assert (msg.kind, msg.recipient_role) == ("review_opened", task.role)
            assert T0 + timedelta(days=182) <= datetime.fromisoformat(
                r.data["period"]).replace(tzinfo=UTC) + timedelta(days=1)
        assert owners["capa"] == "qa" and owners["access_review"] == "isms"
        assert owners["training_assignment"] == "training_coordinator"
        assert by_key["capa"].data["version"] == 1
        assert len(by_key["capa"].data["content_hash"]) == 64
        ar = by_key["access_review"]
        assert [e.action for e in s.execute(select(AuditEvent).where(
            AuditEvent.record_id == ar.id).order_by(AuditEvent.seq)).scalars()] == [
            "create", "task_assigned"]

    assert run_due(engine, schedules, jobs=JOBS) == []  # same day again: nothing
    # a scheduler down for two years opens each definition's latest review once
    clock.set(T0 + timedelta(days=3 * 365))
    run_due(engine, schedules, jobs=JOBS)
    run_due(engine, schedules, jobs=JOBS)
    assert len(numbers(engine, "definition_review")) == 2 * len(keys)


def test_definition_review_signed_by_process_owner_and_co_signed_by_qa(engine, people,
                                                                       make_user):
    """R-WF-8: the process owner signs "Reviewed, remains fit for use", another person of QA
    co-signs, and the review closes."""
    make_user("ivy", "isms", "employee")
    clock.set(T0 + timedelta(days=366))  # every first review is due
    run_due(engine, load_schedules_text(YEARLY, jobs=JOBS), jobs=JOBS)
    with engine.reader() as s:
        numbers_by_key = {r.data["definition"]: r.number for r in s.execute(
            select(Record).where(Record.workflow_key == "definition_review")).scalars()}
    ar, capa = numbers_by_key["access_review"], numbers_by_key["capa"]
    with pytest.raises(RecordNotFound):
        engine.fire(ar, "review_fit", people["emp"], {"review_notes": "fine"},
                    signature=sign(people["emp"]))
    engine.fire(ar, "review_fit", "ivy", {"review_notes": "Annex 11 §12 unchanged."},
                signature=sign("ivy"))
    engine.fire(capa, "review_fit", people["qa"], {"review_notes": "SOP-QA-005 unchanged."},
                signature=sign(people["qa"]))
    with pytest.raises(SegregationOfDuties):
        engine.fire(capa, "approve", people["qa"], signature=sign(people["qa"]))
    engine.fire(capa, "approve", people["qa2"], signature=sign(people["qa2"]))
    engine.fire(ar, "approve", people["qa"], signature=sign(people["qa"]))
    for number in (ar, capa):
        rec = engine.get(number)
        assert (rec.state, rec.outcome) == ("closed", "done")
    with engine.reader() as s:
        meanings = sorted(sig.meaning for sig in s.execute(select(Signature).join(
            Record, Record.id == Signature.record_id).where(Record.number == capa)).scalars())
        assert meanings == ["Approved", "Reviewed, remains fit for use"]


# ------------------------------------------------------------------ password expiry


def set_password(engine, username, when):
    clock.set(when)
    with engine.unit() as s:
        u = identity.get_user(s, username)
        passwords.set_password(s, u, f"Correct-Horse-{when:%m%d}-Battery", policy=Policy(),
                          actor=identity.system_user(s), reason="test")
        u.must_change_password = False


def test_password_expiry_reminder_once_per_user_and_expiry(engine, people, monkeypatch):
    """R-P11-300b-1 R-WF-8: a user whose password expires within 14 days is reminded once
    per expiry date, with the password_expiring template; a new password, a new reminder."""
    monkeypatch.setenv("QMS_PASSWORD_MAX_AGE_DAYS", "90")
    schedules = load_schedules_text(PASSWORDS, jobs=JOBS)
    set_password(engine, people["emp"], datetime(2026, 3, 2, 9, 0, tzinfo=UTC))  # -> 31 May
    set_password(engine, people["qa"], datetime(2026, 3, 20, 9, 0, tzinfo=UTC))  # -> 18 June
    clock.set(datetime(2026, 5, 16, 8, 0, tzinfo=UTC))
    assert run_due(engine, schedules, jobs=JOBS) == []
    clock.set(datetime(2026, 5, 18, 8, 0, tzinfo=UTC))
    assert run_due(engine, schedules, jobs=JOBS) == ["pw [2026-05-18]: reminded ['emma']"]
    for day in (19, 20, 25):
        clock.set(datetime(2026, 5, day, 8, 0, tzinfo=UTC))
        assert run_due(engine, schedules, jobs=JOBS) == []
    with engine.reader() as s:
        (msg,) = s.execute(select(OutboxMessage).where(
            OutboxMessage.kind == "password_expiring")).scalars()
        assert msg.subject == "Your password expires on 2026-05-31"
    dispatch(engine, smtp=None)
    with engine.reader() as s:
        (n,) = s.execute(select(Notification).where(Notification.outbox_id == msg.id)).scalars()
        assert n.subject == "Your QMS password expires soon"
    _, body = render(msg.kind, subject=msg.subject, body=msg.body, recipient="Emma",
                     record_number=None, record_title=None, link=None)
    assert "expires on 2026-05-31 09:00 UTC (in 13 days)" in body and "/account/password" in body
    set_password(engine, people["emp"], datetime(2026, 5, 28, 10, 0, tzinfo=UTC))  # -> 26 Aug
    clock.set(datetime(2026, 6, 5, 8, 0, tzinfo=UTC))
    assert run_due(engine, schedules, jobs=JOBS) == ["pw [2026-06-05]: reminded ['quinn']"]
    clock.set(datetime(2026, 8, 13, 8, 0, tzinfo=UTC))
    assert run_due(engine, schedules, jobs=JOBS) == ["pw [2026-08-13]: reminded ['emma']"]


# ------------------------------------------------------------------ notification kinds


def test_notify_action_and_lockout_set_the_kind_that_picks_the_template(engine, people,
                                                                       make_user):
    """R-P11-300d-1 R-WF-9: a definition's notify action with kind: review_opened and the
    lockout alert (account_locked) are rendered with their templates; a notify without a
    kind stays generic."""
    make_user("ada", "admin")
    capa = engine.get(engine.start("capa", people["emp"],
                                   {"title": "T", "description": "D"}).number)
    run_due(engine, load_schedules_text(MONTHLY, jobs=JOBS), jobs=JOBS)
    policy = Policy(lockout_threshold=2)
    with engine.unit() as s:
        u = identity.get_user(s, people["emp"])
        passwords.set_password(s, u, "Correct-Horse-Battery-9", policy=policy,
                          actor=identity.system_user(s), reason="test")
    with pytest.raises(LoginFailed):
        sessions.check_login_password(engine, people["emp"], "wrong-password!!", policy)
    with pytest.raises(LoginFailed):  # locked, and the login page says only that it failed
        sessions.check_login_password(engine, people["emp"], "wrong-password!!", policy)
    with engine.reader() as s:
        kinds = {(m.record_id, m.kind) for m in s.execute(select(OutboxMessage)).scalars()}
        atr = s.execute(select(Record.id).where(Record.number == "ATR-2026-0001")).scalar_one()
    assert kinds == {(capa.id, "generic"), (atr, "review_opened"), (None, "account_locked")}
    dispatch(engine, smtp=None)
    with engine.reader() as s:
        got = {(u, n.subject) for n, u in s.execute(
            select(Notification, identity.User.username).join(identity.User))}
    assert ("quinn", f"{capa.number}: New CAPA to assign") in got
    assert ("quinn", "ATR-2026-0001: Audit trail review to perform") in got
    assert ("ada", "Security: account emma locked") in got
    _, body = render("review_opened", subject="x", body="y", recipient="Quinn",
                     record_number="ATR-2026-0001", record_title="Audit trail review",
                     link="https://qms/records/ATR-2026-0001")
    assert "A periodic review was opened for you: Audit trail review." in body
