"""The periodic user access review (R-A11-12-3, R-P11-10d-1): one access_review record per
configured system and period."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.orm import Session

from workflow import rules
from workflow.audit import trail as audit
from workflow.db.models import OPEN_TASK, RoleGrant, Task, User
from workflow.errors import WorkflowError
from workflow.identity import users as identity
from workflow.queries.selection import RecordItem
from workflow.scheduling.context import JobContext

log = logging.getLogger(__name__)


def held_grant_clause(now: datetime) -> ColumnElement[bool]:
    """A role grant an access review lists: active at ``now`` (workflow/rules.py), held by
    an active person (not the system user). Join RoleGrant to User on the grant's user_id."""
    return and_(rules.active_grant_clause(now), User.active.is_(True), User.is_system.is_(False))


def active_grants(session: Session, now: datetime) -> list[dict[str, str]]:
    """Every active grant, as the review lists it: ``{user, role}`` by username and role."""
    rows = session.execute(
        select(User.username, RoleGrant.role).join(User, User.id == RoleGrant.user_id)
        .where(held_grant_clause(now))
        .order_by(User.username, RoleGrant.role)).all()
    return [{"user": u, "role": r} for u, r in rows]


def access_review(ctx: JobContext) -> dict[str, Any]:
    """Open one access_review record per system and period (R-A11-12-3, R-P11-10d-1),
    listing every active grant for attestation; for this QMS (``QMS_SYSTEM_NAME``) the real
    role grants, for other systems an empty list that the system owner fills from the
    system's export. Run per record (``for_each_record: {capability: inventory}``, the
    shipped schedule): one review per active inventory entry in scope, referencing the entry,
    assigned to its system owner. Otherwise the ``systems`` listed in the params (the task to
    the owner named there, else the system_owner role); without them this QMS only."""
    if ctx.record is not None:
        return _review(ctx, _system_of(ctx.record), ctx.once_for_record)
    opened: list[str] = []
    skipped: list[str] = []
    # default: this system only (the installation's name), reviewed by the system_owner role
    for system in ctx.params.get("systems") or [{"name": ctx.engine.system_name}]:
        one = _review(ctx, system, functools.partial(_once_for, ctx, system["name"]))
        opened += one["opened"]
        skipped += one["already open"]
    return {"opened": opened, "already open": skipped}


def _once_for(ctx: JobContext, name: str, work: Callable[[Session], Any]) -> tuple[bool, Any]:
    return ctx.once_for_period(name, work)


def _system_of(item: RecordItem) -> dict[str, Any]:
    """The system an inventory entry describes (its ``inventory`` capability's fields)."""
    cap = item.definition.capabilities.inventory
    if cap is None:
        raise WorkflowError(f"{item.number}: an access review per record needs records whose "
                            "workflow declares the inventory capability")
    return {"name": str(item.data.get(cap.name) or item.title),
            "owner": item.data.get(cap.owner) if cap.owner else None,
            "entry": item.number}


def _review(ctx: JobContext, system: Mapping[str, Any],
            once: Callable[[Callable[[Session], Any]], tuple[bool, Any]]) -> dict[str, Any]:
    name = system["name"]

    def work(session: Session) -> str:
        ours = name.strip().lower() == ctx.engine.system_name.lower()
        grants = active_grants(session, ctx.now) if ours else []
        scope = (f"Active role grants of {name} at {ctx.now:%Y-%m-%d %H:%M} UTC, listed by "
                 f"the scheduler ({ctx.reason})." if ours else
                 f"Export the user list of {name} and enter every grant below "
                 f"(opened by {ctx.reason}).")
        data = {"title": f"{name} user access review {ctx.period}", "system": name,
                "period": ctx.period[:20], "scope": scope, "grants": grants}
        if system.get("entry"):
            data["system_entry"] = system["entry"]
        rec = ctx.start_record(session, "access_review", data)
        owner = identity.find_user(session, system["owner"]) if system.get("owner") else None
        if owner is not None and owner.active and \
                "system_owner" in identity.roles_of(session, owner, ctx.now):
            task_id = session.execute(select(Task.id).where(
                Task.record_id == rec.id, OPEN_TASK)).scalars().first()
            if task_id is not None:
                session.execute(update(Task).where(Task.id == task_id)
                                .values(assignee_id=owner.id))
                audit.record_event(session, rec, at=ctx.now, actor=ctx.system(session),
                                   action="task_assigned",
                                   changes={"task": {"task": task_id,
                                                     "assignee": [None, owner.username]}},
                                   reason=ctx.reason)
            ctx.outbox(session, kind="review_opened", record_id=rec.id, user_id=owner.id,
                       subject=f"{rec.number}: user access review of {name} to perform",
                       body=f"The {ctx.period} access review of {name} lists "
                            f"{len(grants)} grant(s) to attest.")
        elif system.get("owner"):
            log.warning("%s: %s is not an active system owner; the review is open to the "
                        "system_owner role", rec.number, system["owner"])
        return rec.number

    done, number = once(work)
    return {"opened": [number] if done else [], "already open": [] if done else [name]}


def check_access_review(params: Mapping[str, Any]) -> list[tuple[tuple, str]]:
    if "systems" not in params:
        return []  # this system only (QMS_SYSTEM_NAME)
    systems = params.get("systems")
    if not isinstance(systems, list) or not systems:
        return [((), "params.systems must list the systems to review, e.g. "
                     "- {name: QMS, owner: jdoe}")]
    out: list[tuple[tuple, str]] = []
    seen: set[str] = set()
    for i, s in enumerate(systems):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"].strip():
            out.append((("systems", i), "each system needs a name"))
            continue
        if s["name"].lower() in seen:
            out.append((("systems", i), f"system {s['name']!r} is listed twice"))
        seen.add(s["name"].lower())
        for k in sorted(set(s) - {"name", "owner"}):
            out.append((("systems", i, k), f"unknown key {k!r} (allowed: name, owner)"))
    return out
