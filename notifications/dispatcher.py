"""The dispatcher: delivers the outbox rows the engine and the jobs wrote, after commit.

1. **Fan-out.** A pending message (channel ``all``) addressed to a role or a user becomes an
   in-app :class:`~workflow.models.Notification` for each recipient (a role: its active
   holders) and, when e-mail is configured and the person has an address, one outbox row per
   recipient on channel ``email`` (immediately) or ``digest`` (held until their next digest
   time, ``QMS_DIGEST_HOUR`` in their time zone). All in one transaction; the original row is
   marked ``sent``. A message nobody can receive (a role nobody holds) is dead-lettered so
   that an administrator sees it.
2. **E-mail.** Due ``email`` rows are leased (``next_attempt_at`` moved ahead so a second
   dispatcher leaves them alone), sent over SMTP outside any transaction, then marked
   ``sent``; a failure counts an attempt and retries after an exponential backoff
   (``QMS_SMTP_RETRY_SECONDS`` x 2^(attempts-1), at most 6 h); after ``QMS_SMTP_MAX_ATTEMPTS``
   the row is ``dead`` with its ``last_error``, listed for administrators.
3. **Digests.** Due ``digest`` rows of one person go out as one e-mail.
4. **Back from an outage.** E-mails dead-lettered because the mail server could not be
   reached (refused, timed out, disconnected: not a refused recipient) are queued again by
   themselves once the server answers: each run with such rows first opens a connection to
   the server (and closes it); when it succeeds, the rows get a fresh set of attempts and go
   out in the same run. An administrator can also queue every dead message again at once
   (:func:`requeue_all`: the *Undeliverable messages* page, ``qms notifications requeue``).

Messages are readable on their own: they use the definition's labels, carry the time of the
event (not of delivery), the due date and the steps expected (``outbox.details``, written with
the message). A message that announces a task is **dropped** (status ``dropped``) when that
task was closed before delivery - at fan-out and again just before an e-mail goes out. Each
person's notification preferences (workflow/identity/profile.py) choose which kinds reach them
in the app and which by e-mail. E-mails carry a text and an HTML part rendered from the same
template, and Message-ID / In-Reply-To / References per record, so mail clients thread them.

Delivery is at least once: a crash between the SMTP server's acceptance and the commit that
marks the row sends that e-mail again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session

from workflow import clock, config, outbox, rules
from workflow.db.models import (
    Notification,
    OutboxMessage,
    Record,
    RoleGrant,
    Task,
    TaskStatus,
    User,
)
from workflow.identity import profile as profiles

from .channels import Mailer, SmtpSettings
from .render import base_url, due_text, record_path, render, render_both, when

#: the status of a message dropped because the task it announced was closed first
DROPPED = "dropped"
TASK_CLOSED = "not delivered: the task it announced was closed before delivery"

log = logging.getLogger(__name__)

#: how long a dispatcher holds rows it is sending (a crashed one's rows retry after this)
LEASE = timedelta(minutes=10)
MAX_BACKOFF = timedelta(hours=6)
_ENV = object()


class UnitOfWork(Protocol):
    """What delivery needs from its caller: write units (commit on success) and read
    sessions. The workflow engine has both; delivery never imports it."""

    def unit(self) -> AbstractContextManager[Session]: ...

    def reader(self) -> AbstractContextManager[Session]: ...


@dataclass
class DispatchReport:
    messages: int = 0  # outbox messages fanned out
    dropped: int = 0  # messages whose task was closed before delivery
    in_app: int = 0  # in-app notifications created
    sent: int = 0  # e-mails accepted by the SMTP server
    digests: int = 0
    retrying: int = 0
    dead: int = 0
    requeued: int = 0  # dead e-mails queued again because the server answers again

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def dispatch(uow: UnitOfWork, *, now: datetime | None = None, smtp: Any = _ENV,
             batch: int = 200) -> DispatchReport:
    """Deliver what is due now. ``smtp``: settings (None: e-mail off); from the environment
    unless given. The units of ``uow`` do the writes; nothing here commits on its own."""
    now = now or clock.now()
    settings: SmtpSettings | None = SmtpSettings.from_settings() if smtp is _ENV else smtp
    report = DispatchReport()
    _fan_out(uow, now, settings, report, batch)
    if settings is not None:
        _revive(uow, settings, report)
        _send(uow, now, settings, report, batch, channel="email")
        _send(uow, now, settings, report, batch, channel="digest")
    return report


# ------------------------------------------------------------------ recipients


def recipients(session: Session, msg: OutboxMessage, now: datetime) -> list[User]:
    """The people a message goes to: its user, and the active holders of its role."""
    users: dict[int, User] = {}
    if msg.recipient_user_id is not None:
        u = session.get(User, msg.recipient_user_id)
        if u is not None and u.active and not u.is_system:
            users[u.id] = u
    if msg.recipient_role:
        # the people holding the role now (the active-grant rule of workflow/rules.py)
        for u in session.execute(
                select(User).join(RoleGrant, RoleGrant.user_id == User.id).where(
                    RoleGrant.role == msg.recipient_role, rules.active_grant_clause(now),
                    User.active.is_(True), User.is_system.is_(False))
                .order_by(User.id)).scalars():
            users.setdefault(u.id, u)
    return list(users.values())


def next_digest_at(user: User, now: datetime) -> datetime:
    """The next ``QMS_DIGEST_HOUR`` o'clock (default 7) in the person's time zone."""
    hour = config.settings().digest_hour
    try:
        zone = ZoneInfo(user.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = now.astimezone(zone)
    at = datetime.combine(local.date(), time(hour), tzinfo=zone)
    if at <= local:
        at = datetime.combine(local.date() + timedelta(days=1), time(hour), tzinfo=zone)
    return at.astimezone(now.tzinfo)


def task_closed(session: Session, record_id: int | None, details: dict[str, Any] | None
                ) -> bool:
    """The message announced a task (its record's state visit) and every task of that visit
    is closed now: delivering it would send someone to work that is done."""
    visit = (details or {}).get("state_visit")
    if record_id is None or visit is None:
        return False
    statuses = session.execute(select(Task.status).where(
        Task.record_id == record_id, Task.state_visit == visit)).scalars().all()
    return bool(statuses) and all(st != TaskStatus.OPEN for st in statuses)


def thread_id(number: str, domain: str) -> str:
    """The id every message about record ``number`` refers to (References, In-Reply-To)."""
    return f"<qms.record.{_id_part(number)}@{domain}>"


def message_id(outbox_id: int, number: str | None, domain: str) -> str:
    return f"<qms.{outbox_id}.{_id_part(number or 'system')}@{domain}>"


def _id_part(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text)[:64]


def in_app_body(body: str, details: dict[str, Any] | None, due: str | None) -> str:
    """The in-app text: the message and one line with the step, due date and steps expected."""
    if not details:
        return body
    facts = [f"Step: {details.get('state')}"]
    if due:
        facts.append(f"due {due}")
    if details.get("steps"):
        facts.append("expected: " + "; ".join(details["steps"]))
    return f"{body}\n{' · '.join(facts)}"


# ------------------------------------------------------------------ fan-out


def _fan_out(uow: UnitOfWork, now: datetime, settings: SmtpSettings | None,
             report: DispatchReport, batch: int) -> None:
    with uow.reader() as s:
        ids = s.execute(select(OutboxMessage.id).where(
            OutboxMessage.status == "pending", OutboxMessage.channel == "all")
            .order_by(OutboxMessage.id).limit(batch)).scalars().all()
    for msg_id in ids:
        with uow.unit() as s:
            # the conditional update is the claim: a second dispatcher updates nothing
            taken = s.execute(update(OutboxMessage).where(
                OutboxMessage.id == msg_id, OutboxMessage.status == "pending",
                OutboxMessage.channel == "all").values(status="sent", sent_at=now))
            if taken.rowcount != 1:
                continue
            msg = s.get(OutboxMessage, msg_id)
            assert msg is not None
            if task_closed(s, msg.record_id, msg.details):
                msg.status, msg.sent_at, msg.last_error = DROPPED, None, TASK_CLOSED
                report.dropped += 1
                continue
            people = recipients(s, msg, now)
            if not people:
                msg.status = "dead"
                msg.sent_at = None
                msg.last_error = (f"nobody to deliver to: no active holder of the role "
                                  f"{msg.recipient_role!r}" if msg.recipient_role else
                                  "nobody to deliver to: the recipient is inactive or unknown")
                report.dead += 1
                continue
            number = title = None
            if msg.record_id is not None:
                number, title = s.execute(select(Record.number, Record.title)
                                          .where(Record.id == msg.record_id)).one()
            path = record_path(number)
            # the time of the event the message tells of, not of its delivery
            event = msg.created_at
            for u in people:
                due = due_text(msg.details, u.timezone)
                parts = render_both(
                    msg.kind, subject=msg.subject, body=msg.body, recipient=u.full_name,
                    record_number=number, record_title=title,
                    link=f"{base_url()}{path}" if path else None, details=msg.details,
                    due=due, event_at=when(event, u.timezone))
                if profiles.wants(u, msg.kind, "in_app"):
                    s.add(Notification(user_id=u.id, outbox_id=msg.id, created_at=event,
                                       subject=parts.subject,
                                       body=in_app_body(msg.body, msg.details, due),
                                       link=path))
                    report.in_app += 1
                if settings is None or not u.email or not profiles.wants(u, msg.kind, "email"):
                    continue
                digest = u.notify_mode == "digest"
                outbox.enqueue(s, at=event, record_id=msg.record_id, recipient_user_id=u.id,
                               subject=parts.subject, body=parts.text, kind=msg.kind,
                               channel="digest" if digest else "email",
                               next_attempt_at=next_digest_at(u, now) if digest else None,
                               details={**(msg.details or {}), "html": parts.html})
            report.messages += 1


# ------------------------------------------------------------------ e-mail


def _backoff(settings: SmtpSettings, attempts: int) -> timedelta:
    return min(timedelta(seconds=settings.retry_seconds * 2 ** max(0, attempts - 1)),
               MAX_BACKOFF)


def _lease(uow: UnitOfWork, now: datetime, channel: str, batch: int) -> list[Any]:
    """Claim due rows of ``channel`` for this dispatcher; returns rows of (id, user id,
    e-mail, full name, subject, body, user active, record number, record id, details)."""
    due = or_(OutboxMessage.next_attempt_at.is_(None), OutboxMessage.next_attempt_at <= now)
    with uow.unit() as s:
        ids = s.execute(select(OutboxMessage.id).where(
            OutboxMessage.status == "pending", OutboxMessage.channel == channel, due)
            .order_by(OutboxMessage.id).limit(batch)).scalars().all()
        mine = []
        for i in ids:
            r = s.execute(update(OutboxMessage).where(
                OutboxMessage.id == i, OutboxMessage.status == "pending", due)
                .values(next_attempt_at=now + LEASE))
            if r.rowcount == 1:
                mine.append(i)
        if not mine:
            return []
        return [tuple(row) for row in s.execute(
            select(OutboxMessage.id, User.id, User.email, User.full_name, OutboxMessage.subject,
                   OutboxMessage.body, User.active, Record.number, OutboxMessage.record_id,
                   OutboxMessage.details)
            .join(User, User.id == OutboxMessage.recipient_user_id)
            .outerjoin(Record, Record.id == OutboxMessage.record_id)
            .where(OutboxMessage.id.in_(mine)).order_by(OutboxMessage.id)).all()]


def _send(uow: UnitOfWork, now: datetime, settings: SmtpSettings, report: DispatchReport,
          batch: int, *, channel: str) -> None:
    rows = _lease(uow, now, channel, batch)
    if not rows:
        return
    # the task a message announced may have closed since fan-out: drop it, do not send it
    with uow.reader() as s:
        closed = {row[0] for row in rows if task_closed(s, row[8], row[9])}
    if closed:
        _drop(uow, closed, report)
        rows = [row for row in rows if row[0] not in closed]
        if not rows:
            return
    # group: one e-mail per row, or one digest per person
    groups: dict[Any, list[tuple]] = defaultdict(list)
    for row in rows:
        groups[row[0] if channel == "email" else row[1]].append(row)
    outcome: dict[int, str | None] = {}  # outbox id -> None (sent) or the error
    try:
        mailer = Mailer(settings)
        with mailer:
            for group in groups.values():
                oid, _, email, name, subject, body, active, number, _, details = group[0]
                ids = [r[0] for r in group]
                if not active or not email:
                    outcome.update({i: "recipient deactivated or without e-mail" for i in ids})
                    continue
                if channel == "digest":
                    subject, body = render("digest", recipient=name, items=[
                        {"subject": r[4], "link": _link(r[7])} for r in group])
                html = None if channel == "digest" else (details or {}).get("html")
                domain = mailer.domain()
                try:
                    mailer.send(email, subject, body, ref=",".join(map(str, ids)), html=html,
                                message_id=message_id(oid, number, domain)
                                if channel == "email" else None,
                                thread=thread_id(number, domain)
                                if channel == "email" and number else None)
                except Exception as exc:  # noqa: BLE001 - recorded on the row, retried
                    outcome.update({i: _describe(exc) for i in ids})
                else:
                    outcome.update({i: None for i in ids})
                    if channel == "digest":
                        report.digests += 1
    except Exception as exc:  # noqa: BLE001 - connection/login failed: every row retries
        error = _describe(exc)
        log.warning("SMTP %s: %s", settings.redacted(), error)
        for row in rows:
            outcome.setdefault(row[0], error)
    _record(uow, now, settings, outcome, report)


def _drop(uow: UnitOfWork, ids: set[int], report: DispatchReport) -> None:
    with uow.unit() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.id.in_(sorted(ids)),
                                              OutboxMessage.status == "pending")
                  .values(status=DROPPED, next_attempt_at=None, last_error=TASK_CLOSED))
    report.dropped += len(ids)


def _record(uow: UnitOfWork, now: datetime, settings: SmtpSettings,
            outcome: dict[int, str | None], report: DispatchReport) -> None:
    with uow.unit() as s:
        for msg in s.execute(select(OutboxMessage).where(
                OutboxMessage.id.in_(sorted(outcome)))).scalars():
            error = outcome[msg.id]
            msg.attempts += 1
            if error is None:
                msg.status, msg.sent_at, msg.next_attempt_at = "sent", now, None
                msg.last_error = None
                report.sent += 1
            elif msg.attempts >= settings.max_attempts or error.startswith("recipient "):
                msg.status, msg.next_attempt_at, msg.last_error = "dead", None, error
                report.dead += 1
                log.error("outbox %s dead after %s attempt(s): %s", msg.id, msg.attempts, error)
            else:
                msg.next_attempt_at = now + _backoff(settings, msg.attempts)
                msg.last_error = error
                report.retrying += 1


def _link(number: str | None) -> str | None:
    path = record_path(number)
    return f"{base_url()}{path}" if path else None


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


#: errors of the connection to the mail server, not of one message: a message dead-lettered
#: for one of them is queued again by itself once the server answers (:func:`_revive`)
TRANSPORT_ERRORS = frozenset({
    "ConnectionRefusedError", "ConnectionResetError", "ConnectionAbortedError", "TimeoutError",
    "timeout", "OSError", "gaierror", "SMTPServerDisconnected", "SMTPConnectError",
    "SMTPHeloError", "SSLError", "SSLEOFError", "BrokenPipeError"})


def _transport_failure(error: str | None) -> bool:
    return error is not None and error.split(":", 1)[0] in TRANSPORT_ERRORS


def _revive(uow: UnitOfWork, settings: SmtpSettings, report: DispatchReport) -> None:
    """Queue again the e-mails that died because the server could not be reached, if it
    answers now (one connection, opened and closed; nothing is sent by it)."""
    with uow.reader() as s:
        ids = [i for i, error in s.execute(
            select(OutboxMessage.id, OutboxMessage.last_error).where(
                OutboxMessage.status == "dead",
                OutboxMessage.channel.in_(("email", "digest")))).all()
            if _transport_failure(error)]
    if not ids:
        return
    try:
        with Mailer(settings):
            pass
    except Exception as exc:  # noqa: BLE001 - still down: they stay dead, checked next run
        log.debug("SMTP %s still unreachable: %s", settings.redacted(), _describe(exc))
        return
    with uow.unit() as s:
        n = cast(CursorResult[Any], s.execute(update(OutboxMessage).where(
            OutboxMessage.id.in_(ids), OutboxMessage.status == "dead")
            .values(status="pending", attempts=0, next_attempt_at=None))).rowcount
    report.requeued += n
    log.warning("SMTP %s answers again: %d dead e-mail(s) queued again", settings.redacted(), n)


# ------------------------------------------------------------------ administrators


def dead_letters(session: Session, limit: int = 200) -> list[tuple[OutboxMessage, str | None]]:
    """Dead-lettered messages, newest first, with the recipient's username."""
    return [(m, who) for m, who in session.execute(
        select(OutboxMessage, User.username)
        .outerjoin(User, User.id == OutboxMessage.recipient_user_id)
        .where(OutboxMessage.status == "dead")
        .order_by(OutboxMessage.id.desc()).limit(limit)).all()]


def requeue(uow: UnitOfWork, outbox_id: int) -> bool:
    """Give a dead message a fresh set of attempts (after the cause is fixed)."""
    with uow.unit() as s:
        r = s.execute(update(OutboxMessage).where(
            OutboxMessage.id == outbox_id, OutboxMessage.status == "dead")
            .values(status="pending", attempts=0, next_attempt_at=None))
        return r.rowcount == 1


def requeue_all(uow: UnitOfWork) -> int:
    """Give every dead message a fresh set of attempts; returns how many."""
    with uow.unit() as s:
        return cast(CursorResult[Any], s.execute(
            update(OutboxMessage).where(OutboxMessage.status == "dead")
            .values(status="pending", attempts=0, next_attempt_at=None))).rowcount
