"""Reminder jobs, each message once per thing and due date: SLA reminders and escalations of
tasks, CAPA effectiveness checks falling due, passwords about to expire."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, cast, exists, literal, select
from sqlalchemy.orm import Session

from workflow import clock, outbox
from workflow.db.models import OPEN_TASK, JobRun, Record, Task, User
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.scheduling.context import JobContext
from workflow.spec.model import parse_duration


def sla_sweep(ctx: JobContext) -> dict[str, Any]:
    """Reminders before a task's due date and escalation when it is overdue, once per task
    and kind (claims ``sla:due_soon`` / ``sla:overdue`` keyed by task). The escalation goes
    to the workflow's process-owner role (the supervising role) unless params.escalate_to
    names one (R-A11-12-3 timeliness; KPIs count overdue work)."""
    remind = parse_duration(str(ctx.params.get("remind_before", "2d")))
    out = {"reminders": 0, "escalations": 0}
    for kind, horizon in (("due_soon", ctx.now + remind), ("overdue", ctx.now)):
        job = f"sla:{kind}"
        claimed = exists().where(JobRun.job == job, JobRun.period_key ==
                                 literal("task:") + cast(Task.id, String))
        cond = [OPEN_TASK, Task.due_at.is_not(None),
                Task.due_at <= horizon, ~claimed]
        if kind == "due_soon":
            cond.append(Task.due_at > ctx.now)
        with ctx.engine.reader() as s:
            tasks = s.execute(select(Task.id, Task.role, Task.assignee_id, Task.due_at,
                                     Task.state, Task.state_visit,
                                     Record.id, Record.number, Record.title,
                                     Record.definition_hash)
                              .join(Record, Record.id == Task.record_id).where(and_(*cond))
                              .order_by(Task.due_at).limit(500)).all()
        for tid, role, assignee, due, state, visit, rid, number, title, dhash in tasks:
            def work(session: Session, tid: int = tid, role: str | None = role,
                     assignee: int | None = assignee, due: datetime = due, rid: int = rid,
                     number: str = number, title: str = title, dhash: str = dhash,
                     kind: str = kind, state: str = state, visit: int = visit) -> None:
                # a date-only due date reads as the date entered (clock.deadline_text)
                when = clock.deadline_text(due)
                d = ctx.engine.registry.by_hash(session, dhash).definition
                about = outbox.details(d, state, visit, due, role=None if assignee else role)
                if kind == "due_soon":
                    ctx.outbox(session, kind="due_soon", record_id=rid, role=None if assignee
                               else role, user_id=assignee,
                               subject=f"{number}: due {when}", body=f"{title}: your task is "
                               f"due on {when}.", details=about)
                    return
                ctx.outbox(session, kind="overdue", record_id=rid,
                           role=None if assignee else role, user_id=assignee,
                           subject=f"{number}: overdue since {when}",
                           body=f"{title}: the task was due on {when}.", details=about)
                boss = ctx.params.get("escalate_to") or d.process_owner
                if boss:
                    who = d.roles.get(role, role) if role else "its assignee"
                    ctx.outbox(session, kind="escalation", record_id=rid, role=boss,
                               subject=f"Escalation: {number} overdue since {when}",
                               body=f"{title}: the task for {who} was due on {when} and is "
                                    "still open.",
                               details=outbox.details(d, state, visit, due, role=boss))

            done, _ = ctx.once(job, f"task:{tid}", work)
            if done:
                out["reminders" if kind == "due_soon" else "escalations"] += 1
    return out


def check_sla(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    out: list[tuple[tuple, str]] = []
    if "remind_before" in params:
        try:
            parse_duration(str(params["remind_before"]))
        except ValueError as exc:
            out.append((("remind_before",), str(exc)))
    if "escalate_to" in params and not re.match(r"^[a-z][a-z0-9_]{0,39}$",
                                                str(params["escalate_to"])):
        out.append((("escalate_to",), "escalate_to must be a role name"))
    return out


def capa_effectiveness_due(ctx: JobContext) -> dict[str, Any]:
    """Tell QA and the CAPA owner when a CAPA's effectiveness check falls due, once per CAPA
    and due date (claim ``capa:effectiveness_due``)."""
    today = ctx.now.date().isoformat()
    with ctx.engine.reader() as s:
        rows = s.execute(select(Record.id, Record.number, Record.title, Record.data).where(
            Record.workflow_key == "capa", Record.state == "effectiveness_check",
            Record.closed_at.is_(None))).all()
    notified = []
    for rid, number, title, data in rows:
        due = data.get("effectiveness_due")
        if not due or due > today:
            continue

        def work(session: Session, rid: int = rid, number: str = number, title: str = title,
                 due: str = due, owner: str | None = data.get("owner")) -> None:
            body = f"{title}: the effectiveness check was due on {due}."
            ctx.outbox(session, kind="effectiveness_due", record_id=rid, role="qa",
                       subject=f"{number}: effectiveness check due", body=body)
            user = identity.find_user(session, owner) if owner else None
            if user is not None:
                ctx.outbox(session, kind="effectiveness_due", record_id=rid, user_id=user.id,
                           subject=f"{number}: effectiveness check due", body=body)

        done, _ = ctx.once("capa:effectiveness_due", f"{number}@{due}", work)
        if done:
            notified.append(number)
    return {"notified": notified}


def password_expiry_reminders(ctx: JobContext) -> dict[str, Any]:
    """Remind users whose password expires within params.days (default 14), once per user
    and expiry date (R-P11-300b-1)."""
    policy = Policy.from_settings()
    if not policy.max_age_days:
        return {}
    days = int(ctx.params.get("days", 14))
    age = timedelta(days=policy.max_age_days)
    # changed after (now - age) so not yet expired; before (now + days - age): expires soon
    with ctx.engine.reader() as s:
        users = s.execute(select(User.id, User.username, User.password_changed_at).where(
            User.active.is_(True), User.is_system.is_(False), User.password_hash.is_not(None),
            User.must_change_password.is_(False), User.password_changed_at.is_not(None),
            User.password_changed_at > ctx.now - age,
            User.password_changed_at <= ctx.now + timedelta(days=days) - age)
            .order_by(User.username)).all()
    reminded = []
    for uid, username, changed in users:
        expires = changed + age

        def work(session: Session, uid: int = uid, expires: datetime = expires) -> None:
            left = max(0, (expires - ctx.now).days)
            ctx.outbox(session, kind="password_expiring", user_id=uid,
                       subject=f"Your password expires on {expires:%Y-%m-%d}",
                       body=f"Your QMS password expires on {expires:%Y-%m-%d %H:%M} UTC "
                            f"(in {left} day{'' if left == 1 else 's'}).")

        done, _ = ctx.once("password:expiring", f"{username}@{expires:%Y-%m-%d}", work)
        if done:
            reminded.append(username)
    return {"reminded": reminded}


def check_password_expiry(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    days = params.get("days", 14)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 90:
        return [(("days",), "days must be a whole number of days from 1 to 90")]
    return []
