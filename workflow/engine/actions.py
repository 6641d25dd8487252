"""The built-in on-enter action kinds. Each is a function ``(ctx, compiled, rec, user,
action)`` run inside the unit that enters the state; the Engine takes a table of kinds, so a
feature adds its own (change control's ``publish_draft``, see workflow/bootstrap.py) without
the engine importing it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select

from workflow import outbox
from workflow.audit import trail as audit
from workflow.db import records
from workflow.db.models import Record, User
from workflow.engine import exclusive, inputs, lifecycle, states
from workflow.engine.context import ActionKind, Ctx
from workflow.errors import ValidationFailed, WorkflowError
from workflow.identity import users as identity
from workflow.spec.machine import Compiled
from workflow.spec.model import Action, parse_duration

#: create_record actions may nest this deep (a record creating a record creating ...)
MAX_DEPTH = 5


def create_record(ctx: Ctx, compiled: Compiled, rec: Record, user: User, action: Action) -> None:
    """Create linked records (one, or one per item of ``for_each``), copying values."""
    p = action.params
    names = inputs.names(ctx, compiled.definition, rec, rec.data, user)
    if "when" in p and not inputs.evaluate(p["when"], names, action):
        return
    items = [None]
    if "for_each" in p:
        items = list(inputs.evaluate(p["for_each"], names, action) or [])
    if ctx.depth > MAX_DEPTH:
        raise WorkflowError("create_record actions nest too deep (more than 5 levels)")
    child = ctx.registry.latest(ctx.session, p["workflow"])
    # the system initiates linked records, so that whoever's step caused them is not
    # barred from them by "not the initiator" rules; the audit reason names them
    creator = identity.system_user(ctx.session)
    why = f"created by {rec.number} on entering {rec.state} (step by {user.full_name})"
    stored: dict[int, str] = {}  # row index -> the created record's number (``store``)
    ctx.depth += 1
    try:
        for item in items:
            seen = {**names, "item": item}
            if "source" in p:  # another record whose fields the copy expressions read
                seen["source"] = _source(ctx, inputs.evaluate(p["source"], seen, action))
            values = {k: inputs.evaluate(expr, seen, action)
                      for k, expr in p.get("copy", {}).items()}
            try:
                created = ctx.spawn(ctx, child, creator, values, parent=rec,
                                    link=p.get("link", "spawned_by"), reason=why)
            except ValidationFailed as exc:
                raise WorkflowError(
                    f"{rec.number} could not create its linked {child.definition.title}: "
                    f"{exc.message}") from exc
            if "store" in p:
                rows = names.get(p["store"].partition(".")[0]) or []
                index = next((i for i, r in enumerate(rows) if r is item), None)
                if index is None:
                    raise WorkflowError(f"create_record store: {p['store']!r} needs for_each "
                                        "to give rows of that list (e.g. [r for r in ...])")
                stored[index] = created.number
    finally:
        ctx.depth -= 1
    if stored:
        _store_numbers(ctx, rec, user, p["store"], stored)


def _source(ctx: Ctx, number: object) -> dict[str, object]:
    """The fields of record ``number`` as this unit sees them (``create_record source:``)."""
    key = str(number or "").strip().upper()
    for rec in records.tracked(ctx.session):
        if rec.number == key:
            return dict(rec.data)
    data = ctx.session.execute(select(Record.__table__.c.data)
                               .where(Record.__table__.c.number == key)).scalar_one_or_none()
    if data is None:
        raise WorkflowError(f"create_record source: there is no record {key or '(none)'}")
    return dict(data)


def _store_numbers(ctx: Ctx, rec: Record, user: User, target: str,
                   numbers: Mapping[int, str]) -> None:
    """Write each created record's number into its row's column (``store: list.column``),
    audited like any change."""
    field, _, column = target.partition(".")
    old = rec.data.get(field) or []
    new = [{**row, column: numbers[i]} if i in numbers else row for i, row in enumerate(old)]
    rec.data = {**rec.data, field: new}
    audit.record_event(ctx.session, rec, at=ctx.now, actor=user, action="update",
                       changes={field: [old, new]},
                       reason=f"numbers of the records created on entering {rec.state}")


def add_months(day: date, months: int) -> date:
    """``day`` plus calendar ``months`` (the last day of a shorter month: Jan 31 + 1 = Feb 28)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    for last in (31, 30, 29, 28):
        try:
            return date(year, month + 1, min(day.day, last))
        except ValueError:
            continue
    raise ValueError(f"cannot add {months} months to {day}")  # pragma: no cover


def set_due(ctx: Ctx, compiled: Compiled, rec: Record, user: User, action: Action) -> None:
    """Set a date field to now + a duration (or + the days, or calendar months, another field
    holds: ``after_days_field``, ``after_months_field``). With
    ``from_field`` the duration counts from that date/time field's value instead of now
    (nothing is set while it is empty); ``when``: only when the expression holds. A
    ``datetime`` target keeps the time of day (a 72-hour clock), a ``date`` target the day."""
    p = action.params
    if "when" in p:
        names = inputs.names(ctx, compiled.definition, rec, rec.data, user)
        if not inputs.evaluate(p["when"], names, action):
            return
    days = None
    if p.get("after_days_field"):
        days = rec.data.get(p["after_days_field"])
    delta = timedelta(days=int(days)) if days else parse_duration(p["after"])
    start = ctx.now
    if p.get("from_field"):
        raw = rec.data.get(p["from_field"])
        if not raw:
            return
        start = states.end_of(str(raw)) if "T" in str(raw) else \
            datetime.combine(date.fromisoformat(str(raw)), time(0), tzinfo=UTC)
    target = compiled.definition.fields.get(p["field"])
    months = rec.data.get(p["after_months_field"]) if p.get("after_months_field") else None
    if months:  # calendar months (a periodic review every 24 months), same day or month end
        value = add_months(start.date(), int(months)).isoformat()
    elif target is not None and target.type == "datetime":
        value = (start + delta).astimezone(UTC).isoformat()
    else:
        value = (start + delta).date().isoformat()
    old = rec.data.get(p["field"])
    if old != value:
        rec.data = {**rec.data, p["field"]: value}
        audit.record_event(ctx.session, rec, at=ctx.now, actor=user, action="update",
                           changes={p["field"]: [old, value]},
                           reason=f"set on entering {rec.state}")


def start_timer(ctx: Ctx, compiled: Compiled, rec: Record, user: User, action: Action) -> None:
    """A timer that fires a transition as the system user when it is due."""
    states.start_timer(ctx, rec, action.params)


def notify(ctx: Ctx, compiled: Compiled, rec: Record, user: User, action: Action) -> None:
    """Queue a message (outbox) for a role, the initiator or a user a field names."""
    p = action.params
    names = inputs.names(ctx, compiled.definition, rec, rec.data, user)
    if "when" in p and not inputs.evaluate(p["when"], names, action):
        return
    recipient_user = None
    if p.get("field") and rec.data.get(p["field"]):
        recipient_user = ctx.user_id(rec.data[p["field"]])
    role = p.get("role") if p.get("role") not in ("initiator", "assignee") else None
    if p.get("role") == "initiator":
        recipient_user = rec.created_by_id
    d = compiled.definition
    state = d.states[rec.state]
    outbox.enqueue(ctx.session, at=ctx.now, record_id=rec.id, recipient_role=role,
                   recipient_user_id=recipient_user, subject=f"{rec.number}: {p['subject']}",
                   body=f"{rec.number} ({rec.title}) is now {state.label}.",
                   kind=p.get("kind") or "generic",
                   details=outbox.details(d, rec.state, rec.state_visit,
                                          states.task_due(ctx, rec, state), role=role))


def revoke_grants(ctx: Ctx, compiled: Compiled, rec: Record, user: User, action: Action) -> None:
    """Revoke the role grants an access review decided to revoke - of this system only."""
    p = action.params
    # only grants of this system are revoked here; an access review of another system
    # lists revocations that its administrator executes there and confirms
    system_field = p.get("system_field")
    if system_field and str(rec.data.get(system_field, "")).strip().lower() \
            != ctx.system_name.lower():
        return
    for item in rec.data.get(p["items"]) or []:
        if item.get("decision") != "revoke":
            continue
        target = identity.find_user(ctx.session, item.get("user", ""))
        if target is None:
            continue
        identity.revoke_role(ctx.session, target, item.get("role", ""), actor=user,
                             reason=f"access review {rec.number}")


def fire_on_matching(ctx: Ctx, compiled: Compiled, rec: Record, user: User,
                     action: Action) -> None:
    """Fire a transition as the system, in this unit, on every other record whose ``match``
    fields equal this record's and that is in a state the transition leaves (and for which
    ``when`` holds; it sees this record's fields and ``other``, the other's): entering
    "effective" supersedes the version in force before. Both trails record it."""
    p = action.params
    target = ctx.registry.latest(ctx.session, p.get("workflow") or compiled.definition.key)
    t = target.definition.transitions.get(p["transition"])
    if t is None:  # another workflow's transition (checked only when loaded together)
        raise WorkflowError(f"fire_on_matching: {target.definition.title} has no step "
                            f"{p['transition']!r}")
    values = exclusive.key_of(rec, p["match"])
    if values is None:
        return
    names = inputs.names(ctx, compiled.definition, rec, rec.data, user)
    system = identity.system_user(ctx.session)
    for sib in exclusive.siblings(ctx.session, target.definition.key, t.sources, values, rec.id):
        if "when" in p and not inputs.evaluate(p["when"], {**names, "other": dict(sib.data)},
                                               action):
            continue
        other = next((r for r in records.tracked(ctx.session) if r.id == sib.id), None) \
            or records.lock(ctx.session, sib.id)
        if other.state not in t.sources:  # moved on meanwhile (read again under the lock)
            continue
        why = (f"{t.label} by {rec.number} entering {compiled.definition.states[rec.state].label}"
               f" (step by {user.full_name})")
        lifecycle.fire(ctx, other, t.name, system, {}, None, why, system_actor=True)
        audit.record_event(ctx.session, rec, at=ctx.now, actor=system, action="fired_on_matching",
                           changes={"record": other.number, "transition": t.name,
                                    "state": other.state}, reason=why)


#: the kinds every engine has; features add theirs (Engine(actions=...))
BUILTIN: Mapping[str, ActionKind] = {
    "create_record": create_record,
    "set_due": set_due,
    "start_timer": start_timer,
    "notify": notify,
    "revoke_grants": revoke_grants,
    "fire_on_matching": fire_on_matching,
}
