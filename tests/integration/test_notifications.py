"""Notification delivery: the outbox rows written with their cause become in-app
notifications and e-mails, received here by a real SMTP server on loopback (aiosmtpd);
stopping that server loses nothing, retries back off, a message dead-letters after N
attempts, templates carry the right links, and a daily digest collects a day's messages
(R-P11-10e-1: side effects after commit; R-P11-300d-1: lockout alerts reach the security
role; R-A11-12-3).

Time travels with workflow.clock; nothing sleeps.
"""

from __future__ import annotations

import email
import logging
import socket
from datetime import UTC, datetime, timedelta
from email import policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select, update

from notifications import dead_count, unread_count
from notifications.channels import SmtpSettings
from notifications.dispatcher import dead_letters, dispatch, requeue, requeue_all
from workflow import clock
from workflow.db.models import Notification, OutboxMessage, User
from workflow.identity import users as identity
from workflow.scheduling.jobs import default_jobs
from workflow.scheduling.schedules import load_schedules_text
from workflow.scheduling.service import run_due

JOBS = default_jobs()

BASE = "https://qms.example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 and a free port; stop() and start() again on the same port."""

    def __init__(self, auth: tuple[str, str] | None = None):
        self.port = free_port()
        self.box = Mailbox()
        self.auth = auth
        self.ctl: Controller | None = None

    def start(self) -> None:
        kw = {}
        if self.auth:
            def check(server, session, envelope, mechanism, data):
                ok = isinstance(data, LoginPassword) and \
                    (data.login.decode(), data.password.decode()) == self.auth
                return AuthResult(success=ok)
            kw = {"authenticator": check, "auth_require_tls": False, "auth_required": True}
        self.ctl = Controller(self.box, hostname="127.0.0.1", port=self.port, **kw)
        self.ctl.start()

    def stop(self) -> None:
        if self.ctl is not None:
            self.ctl.stop()
            self.ctl = None

    def settings(self, **kw) -> SmtpSettings:
        user = f"{self.auth[0]}:{self.auth[1]}@" if self.auth else ""
        return SmtpSettings.from_url(f"smtp://{user}127.0.0.1:{self.port}",
                                     sender="qms@example.com", timeout=5, **kw)

    @property
    def messages(self):
        return self.box.messages


@pytest.fixture
def smtp():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def base_url(monkeypatch):
    monkeypatch.setenv("QMS_BASE_URL", BASE)
    monkeypatch.delenv("QMS_SMTP_URL", raising=False)
    monkeypatch.delenv("QMS_DIGEST_HOUR", raising=False)


def new_capa(engine, people):
    """Starting a CAPA queues "New CAPA to assign" for the QA role (quinn and quentin)."""
    return engine.start("capa", people["emp"], {"title": "Label mix-up", "description": "QC"})


def outbox_rows(engine, **where):
    with engine.reader() as s:
        q = select(OutboxMessage).order_by(OutboxMessage.id)
        for k, v in where.items():
            q = q.where(getattr(OutboxMessage, k) == v)
        return s.execute(q).scalars().all()


def set_mode(engine, username, mode):
    with engine.unit() as s:
        s.execute(update(User).where(User.username == username).values(notify_mode=mode))


def test_in_app_notification_for_each_holder_of_the_role(engine, people):
    """A role's message reaches each active holder in-app, with the record link; without
    QMS_SMTP_URL no e-mail is queued."""
    r = new_capa(engine, people)
    report = dispatch(engine)
    assert (report.messages, report.in_app, report.sent) == (1, 2, 0)
    with engine.reader() as s:
        rows = s.execute(select(Notification, User.username).join(User)
                         .order_by(User.username)).all()
        assert [(u, n.subject, n.link) for n, u in rows] == [
            ("quentin", f"{r.number}: New CAPA to assign", f"/records/{r.number}"),
            ("quinn", f"{r.number}: New CAPA to assign", f"/records/{r.number}")]
        quinn = identity.get_user(s, "quinn")
        assert unread_count(s, quinn.id) == 1
    (orig,) = outbox_rows(engine)
    assert (orig.status, orig.sent_at) == ("sent", clock.now())
    assert dispatch(engine).summary() == {"messages": 0, "dropped": 0, "in_app": 0, "sent": 0,
                                          "digests": 0, "retrying": 0, "dead": 0,
                                          "requeued": 0}


def test_emails_reach_a_real_smtp_server_with_record_links(engine, people, smtp):
    r = new_capa(engine, people)
    report = dispatch(engine, smtp=smtp.settings())
    assert (report.in_app, report.sent) == (2, 2)
    assert sorted(m["To"] for m in smtp.messages) == ["quentin@example.com", "quinn@example.com"]
    m = smtp.messages[0]
    assert m["Subject"] == f"{r.number}: New CAPA to assign"
    assert m["From"] == "qms@example.com"
    body = m.get_body(preferencelist=("plain",)).get_content()
    assert f"Open it: {BASE}/records/{r.number}" in body
    assert "Label mix-up" in body
    assert {x.status for x in outbox_rows(engine, channel="email")} == {"sent"}
    dispatch(engine, smtp=smtp.settings())
    assert len(smtp.messages) == 2  # nothing twice


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_login(engine, people):
    """User and password from QMS_SMTP_URL (URL-encoded) log in to the server."""
    server = SmtpServer(auth=("qms", "s3cret pw"))
    server.start()
    try:
        new_capa(engine, people)
        settings = SmtpSettings.from_url(f"smtp://qms:s3cret%20pw@127.0.0.1:{server.port}",
                                         timeout=5)
        assert dispatch(engine, smtp=settings).sent == 2
        assert len(server.messages) == 2
    finally:
        server.stop()


def test_stopping_the_mail_server_loses_nothing(engine, people, smtp):
    """The outbox keeps failed e-mails, backs off exponentially and delivers them once the
    server is back."""
    settings = smtp.settings(retry_seconds=60)
    smtp.stop()
    new_capa(engine, people)
    report = dispatch(engine, smtp=settings)
    assert (report.in_app, report.sent, report.retrying) == (2, 0, 2)
    rows = outbox_rows(engine, channel="email")
    assert [(x.status, x.attempts, x.next_attempt_at) for x in rows] == [
        ("pending", 1, clock.now() + timedelta(seconds=60))] * 2
    assert "Connection refused" in rows[0].last_error or "Errno" in rows[0].last_error
    assert dispatch(engine, smtp=settings).retrying == 0  # backing off: not yet
    clock.advance(timedelta(seconds=61))
    assert dispatch(engine, smtp=settings).retrying == 2
    rows = outbox_rows(engine, channel="email")
    assert {x.next_attempt_at for x in rows} == {clock.now() + timedelta(seconds=120)}

    smtp.start()
    clock.advance(timedelta(seconds=121))
    assert dispatch(engine, smtp=settings).sent == 2
    assert sorted(m["To"] for m in smtp.messages) == ["quentin@example.com", "quinn@example.com"]
    assert [(x.status, x.attempts, x.last_error) for x in outbox_rows(engine, channel="email")] \
        == [("sent", 3, None)] * 2


def test_dead_letter_after_n_attempts_visible_and_requeueable(engine, people, smtp):
    settings = smtp.settings(max_attempts=3, retry_seconds=10)
    smtp.stop()
    new_capa(engine, people)
    for _ in range(3):
        dispatch(engine, smtp=settings)
        clock.advance(timedelta(hours=1))
    rows = outbox_rows(engine, channel="email")
    assert [(x.status, x.attempts) for x in rows] == [("dead", 3)] * 2
    assert dispatch(engine, smtp=settings).summary()["retrying"] == 0
    with engine.reader() as s:
        assert dead_count(s) == 2
        dead = dead_letters(s)
        assert sorted(who for _, who in dead) == ["quentin", "quinn"]
    smtp.start()
    assert requeue(engine, rows[0].id) and not requeue(engine, rows[0].id)
    # the other one died of the same outage: queued again by itself, the server answering
    report = dispatch(engine, smtp=settings)
    assert (report.sent, report.requeued) == (2, 1)


def test_dead_emails_go_out_by_themselves_once_the_server_answers(engine, people, smtp,
                                                                   caplog):
    """R-OPS-19: the mail server is down past the retry budget, every e-mail dies; while it
    stays down they stay dead (no send, no log line per run); once it answers, the next
    dispatcher run queues them again and delivers them without anyone clicking. An e-mail
    refused for its recipient is not revived."""
    settings = smtp.settings(max_attempts=2, retry_seconds=10)
    smtp.stop()
    new_capa(engine, people)
    for _ in range(2):
        dispatch(engine, smtp=settings)
        clock.advance(timedelta(hours=1))
    assert [x.status for x in outbox_rows(engine, channel="email")] == ["dead"] * 2
    with engine.unit() as s:  # a third one died of its recipient: stays dead
        s.add(OutboxMessage(kind="test", channel="email", status="dead", attempts=1,
                            recipient_user_id=identity.get_user(s, people["qa"]).id,
                            subject="bounced", body="x", created_at=clock.now(),
                            last_error="recipient deactivated or without e-mail"))
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="notifications.dispatcher"):
        for _ in range(3):  # still down: nothing changes, nothing logged above debug
            report = dispatch(engine, smtp=settings)
            assert (report.requeued, report.sent) == (0, 0)
            clock.advance(timedelta(minutes=1))
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    smtp.start()
    with caplog.at_level(logging.INFO, logger="notifications.dispatcher"):
        report = dispatch(engine, smtp=settings)
    assert (report.requeued, report.sent) == (2, 2)
    assert sorted(m["To"] for m in smtp.messages) == ["quentin@example.com", "quinn@example.com"]
    assert [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()] == [
        f"SMTP {settings.redacted()} answers again: 2 dead e-mail(s) queued again"]
    assert [(x.subject, x.status) for x in outbox_rows(engine, status="dead")] == [
        ("bounced", "dead")]


def test_an_administrator_requeues_every_dead_message_at_once(engine, people, smtp):
    """R-OPS-20: requeue_all gives every dead message (whatever its cause) a fresh set of
    attempts; the dispatcher then sends them."""
    settings = smtp.settings(max_attempts=1)
    smtp.stop()
    new_capa(engine, people)
    dispatch(engine, smtp=settings)
    with engine.unit() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.status == "dead")
                  .values(last_error="SMTPRecipientsRefused: {...}"))  # not revived alone
    smtp.start()
    assert dispatch(engine, smtp=settings).sent == 0
    assert requeue_all(engine) == 2 and requeue_all(engine) == 0
    assert dispatch(engine, smtp=settings).sent == 2


def test_message_to_a_role_nobody_holds_is_dead_lettered(engine, people):
    with engine.unit() as s:
        s.add(OutboxMessage(created_at=clock.now(), recipient_role="nobody_role",
                            subject="Hello?", body="", status="pending", attempts=0))
    assert dispatch(engine).dead == 1
    (m,) = outbox_rows(engine)
    assert m.status == "dead" and "no active holder of the role 'nobody_role'" in m.last_error


def test_lockout_alert_reaches_the_security_role(engine, people, make_user, smtp):
    """R-P11-300d-1: the lockout message the identity layer queues is delivered."""
    make_user("ada", "admin")
    with engine.unit() as s:
        s.add(OutboxMessage(created_at=clock.now(), recipient_role="admin",
                            subject="Security: account emma locked", body="5 failed attempts",
                            status="pending", attempts=0))
    dispatch(engine, smtp=smtp.settings())
    (m,) = smtp.messages
    assert (m["To"], m["Subject"]) == ("ada@example.com", "Security: account emma locked")


def test_daily_digest_collects_a_days_messages(engine, people, smtp):
    """A person on the digest gets in-app messages at once and one e-mail a day with all
    of them, each with its link; others still get theirs immediately."""
    set_mode(engine, "quinn", "digest")
    settings = smtp.settings()
    a = new_capa(engine, people)  # 2026-03-02 09:00
    dispatch(engine, smtp=settings)
    clock.advance(timedelta(hours=8))
    b = new_capa(engine, people)
    dispatch(engine, smtp=settings)
    assert sorted(m["To"] for m in smtp.messages) == ["quentin@example.com"] * 2
    with engine.reader() as s:
        assert unread_count(s, identity.get_user(s, "quinn").id) == 2
    clock.set(datetime(2026, 3, 3, 6, 59, tzinfo=UTC))
    dispatch(engine, smtp=settings)
    assert len(smtp.messages) == 2
    clock.set(datetime(2026, 3, 3, 7, 0, tzinfo=UTC))
    report = dispatch(engine, smtp=settings)
    assert (report.digests, report.sent) == (1, 2)
    digest = smtp.messages[-1]
    assert digest["To"] == "quinn@example.com"
    assert digest["Subject"] == "QMS daily digest: 2 messages"
    text = digest.get_content()
    for r in (a, b):
        assert f"* {r.number}: New CAPA to assign" in text
        assert f"{BASE}/records/{r.number}" in text
    dispatch(engine, smtp=settings)
    assert len(smtp.messages) == 3


def test_scheduler_runs_the_dispatcher_every_minute(engine, people):
    schedules = load_schedules_text(
        "schedules:\n  notifications: {job: dispatch_notifications, every: minute}\n", jobs=JOBS)
    new_capa(engine, people)
    (line,) = run_due(engine, schedules, jobs=JOBS)
    assert line == "notifications [now]: messages 1, in_app 2"
    assert run_due(engine, schedules, jobs=JOBS) == []
