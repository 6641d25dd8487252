"""Timers: a pending timer fires its transition as the system user when it is due."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import clock
from workflow.db import records
from workflow.db.models import Timer, TimerStatus
from workflow.engine import lifecycle
from workflow.engine.context import Ctx
from workflow.identity import users as identity


def due(session: Session, limit: int) -> Sequence[int]:
    """Ids of pending timers that are due, oldest first."""
    return session.execute(
        select(Timer.id).where(Timer.status == TimerStatus.PENDING, Timer.fire_at <= clock.now())
        .order_by(Timer.fire_at).limit(limit)
    ).scalars().all()


def fire(ctx: Ctx, timer_id: int) -> str:
    """Fire one timer in the caller's unit; returns a line saying what happened."""
    session = ctx.session
    t = session.get(Timer, timer_id)
    if t is None or t.status != TimerStatus.PENDING:
        return f"timer {timer_id}: already handled"
    rec = records.lock(session, t.record_id)
    if rec.state_visit != t.state_visit:
        t.status = TimerStatus.CANCELLED
        return f"timer {timer_id}: record moved on"
    system = identity.system_user(session)
    t.status = TimerStatus.FIRED
    lifecycle.fire(ctx, rec, t.transition, system, {}, None,
                   f"timer: {t.transition} due at {t.fire_at:%Y-%m-%d %H:%M} UTC",
                   system_actor=True)
    return f"{rec.number}: {t.transition} -> {rec.state}"


def mark_failed(session: Session, timer_id: int, error: str) -> None:
    """A timer whose transition was refused is marked failed with the reason (it never
    retries silently forever)."""
    t = session.get(Timer, timer_id)
    if t is not None and t.status == TimerStatus.PENDING:
        t.status = TimerStatus.FAILED
        t.last_error = error
