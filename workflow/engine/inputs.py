"""What a step may change and what it checks: field values against the definition's field
specs, references to users and records, links, and declarative guards (a safe expression
library, never Python ``eval``; a guard that cannot be evaluated blocks the step)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import blobs
from workflow.db.models import Record, RecordLink, User
from workflow.engine import statements as st
from workflow.engine.context import Ctx, remember_user
from workflow.errors import GuardFailed, ValidationFailed, WorkflowError
from workflow.spec import expressions
from workflow.spec.fields import (
    FieldValueError,
    coerce,
    compute,
    files_in,
    has_computed,
    references_in,
    users_in,
)
from workflow.spec.model import Action, Guard, WorkflowDefinition


def clean(session: Session, d: WorkflowDefinition, current: dict[str, Any],
          data: Mapping[str, Any], *, allowed: tuple[str, ...], what: str,
          own_number: str | None = None, actor: User | None = None) -> dict[str, Any]:
    """Validate ``data`` against the fields ``allowed`` to change; return the new data.
    ``actor``: the acting user if this unit read them as an active person (get_actor):
    naming them needs no look-up."""
    errors: dict[str, str] = {}
    new = dict(current)
    for name, value in data.items():
        spec = d.fields.get(name)
        if spec is None:
            errors[name] = f"is not a field of {d.title}"
            continue
        if name not in allowed:
            errors[name] = f"cannot be changed when {what}"
            continue
        try:
            v = coerce(spec, value)
        except FieldValueError as exc:
            errors[name] = str(exc)
            continue
        if v is None:
            new.pop(name, None)
        else:
            new[name] = v
    for name in data:  # computed list columns, over the new values (never from input)
        spec = d.fields.get(name)
        if spec is not None and has_computed(spec) and new.get(name):
            try:
                # the record's fields as they will be (a default not yet applied)
                record = {f.name: new.get(f.name, f.default) for f in d.fields.values()}
                new[name] = compute(spec, new[name], record)
            except FieldValueError as exc:
                errors[name] = str(exc)
    if not errors:
        computed_fields(d, new, errors)
    if errors:
        raise ValidationFailed(errors)
    check_existence(session, d, {k: new[k] for k in data if k in new}, errors,
                    own_number=own_number,
                    known=actor.username if actor is not None else None)
    if errors:
        raise ValidationFailed(errors)
    return new


def computed_fields(d: WorkflowDefinition, new: dict[str, Any], errors: dict[str, str]
                    ) -> None:
    """Record fields declared ``computed``, evaluated over the other fields as they will be
    (in declared order; never taken from input: no step edits them)."""
    for f in d.fields.values():
        if not f.computed or f.type == "list":
            continue
        record = {x.name: new.get(x.name, x.default) for x in d.fields.values()}
        try:
            value = coerce(replace(f, computed=None), expressions.evaluate(f.computed, record))
        except (expressions.ExpressionError, FieldValueError) as exc:
            errors[f.name] = f"cannot be computed ({exc})"
            continue
        if value is None:
            new.pop(f.name, None)
        else:
            new[f.name] = value


def check_existence(session: Session, d: WorkflowDefinition, values: Mapping[str, Any],
                    errors: dict[str, str], own_number: str | None = None,
                    known: str | None = None) -> None:
    """Named users must be active people; referenced records must exist in the workflow
    the field names; files must be stored. ``known``: a username this unit read as an
    active person (the actor), not looked up again."""
    for name, value in values.items():
        spec = d.fields[name]
        names = users_in(spec, value)
        if names:
            found = {known} & set(names)
            ask = [n for n in names if n != known]
            for n, uid in session.execute(st.ACTIVE_USERNAMES, {"names": ask}) if ask else ():
                found.add(n)
                remember_user(session, n, uid)
            bad = [n for n in names if n not in found]
            if bad:
                errors[name] = f"no active user {', '.join(sorted(set(bad)))}"
        files = files_in(spec, value)
        if files:  # a file value names a stored upload (workflow/blobs.py)
            store = blobs.store()
            gone = [f["name"] for f in files if not store.exists(f["sha256"])]
            if gone:
                errors[name] = f"no uploaded file {', '.join(gone)}: upload the file itself"
        refs = references_in(spec, value)
        if refs:
            numbers = [n for _, n in refs]
            if own_number in numbers:
                errors[name] = f"{own_number} cannot refer to itself"
                continue
            found_refs = {num: wf for num, wf in session.execute(
                st.RECORD_WORKFLOWS, {"numbers": numbers})}
            bad = [n for wf, n in refs if found_refs.get(n) != wf]
            if bad:
                # the workflow the reference (a field, list item or list column) names
                wfs = sorted({wf for wf, n in refs if n in bad and wf}) or ["such"]
                errors[name] = f"no {' or '.join(wfs)} record {', '.join(sorted(set(bad)))}"


def link(ctx: Ctx, source: Record, target: Record, kind: str, user: User) -> None:
    ctx.session.add(RecordLink(source_id=source.id, target_id=target.id, kind=kind,
                               created_at=ctx.now, created_by_id=user.id))


def link_references(ctx: Ctx, d: WorkflowDefinition, rec: Record, old: Mapping[str, Any],
                    new: Mapping[str, Any], user: User) -> None:
    """A reference field that declares a link kind links the records it newly names."""
    for spec in d.fields.values():
        if not spec.link and not (spec.item and spec.item.link):
            continue
        kind = spec.link or (spec.item.link if spec.item else None)
        before = {n for _, n in references_in(spec, old.get(spec.name))}
        after = [n for _, n in references_in(spec, new.get(spec.name))]
        for number in dict.fromkeys(after):
            if number in before or number == rec.number:
                continue
            target = ctx.session.execute(
                select(Record).where(Record.number == number)).scalar_one()
            exists = ctx.session.execute(
                select(RecordLink.id).where(RecordLink.source_id == rec.id,
                                            RecordLink.target_id == target.id,
                                            RecordLink.kind == kind)).first()
            if not exists:
                link(ctx, rec, target, kind or "related", user)


def names(ctx: Ctx, d: WorkflowDefinition, rec: Record, data: Mapping[str, Any],
          user: User | None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The names an expression sees: the fields, now/today, the number, actor, initiator."""
    out: dict[str, Any] = {f: data.get(f) for f in d.fields}
    out.update(now=ctx.now.isoformat(), today=ctx.now.date().isoformat(), number=rec.number,
               actor=user.username if user else None, item=None, user=None,
               actor_roles=tuple(sorted(ctx.roles(user))) if user else ())
    out["initiator"] = None
    if rec.created_by_id is not None:
        out["initiator"] = ctx.username(rec.created_by_id)
    if extra:
        out.update(extra)
    return out


def check_guards(step: str, guards: tuple[Guard, ...], values: Mapping[str, Any]) -> None:
    """Every guard holds, or GuardFailed with its message."""
    for g in guards:
        try:
            ok = expressions.evaluate(g.when, values)
        except expressions.ExpressionError as exc:
            # fail closed: a guard that cannot be evaluated blocks the transition
            raise GuardFailed(step, f"{g.message} (the check could not be evaluated: "
                                    f"{exc})") from None
        if not ok:
            raise GuardFailed(step, g.message)


def evaluate(text: str, values: Mapping[str, Any], action: Action) -> Any:
    """An action's expression; a failure names the action."""
    try:
        return expressions.evaluate(text, values)
    except expressions.ExpressionError as exc:
        raise WorkflowError(f"{action.kind} action could not evaluate {text!r}: {exc}") from None
