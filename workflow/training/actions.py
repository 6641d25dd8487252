"""What the training matrix adds to the engine (wired by workflow/bootstrap.py): two on-enter
action kinds and the role hook.

- ``check_curriculum``: a curriculum record (``curriculum`` capability) names a role that can
  be granted and document numbers that exist; otherwise the step is refused, nothing written;
- ``assign_training``: on a document version (``document`` capability) entering the state
  that declares it (approved), assign that version to everyone who needs it; on a curriculum
  entering it (active), assign the curriculum to its role's holders;
- :func:`on_role_change`: in the unit that grants a role, assign the role's curricula; in the
  unit that revokes one, cancel the open assignments no remaining role requires."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from workflow.db.models import Record, User
from workflow.engine.context import ActionKind, Ctx
from workflow.identity.users import RoleChange
from workflow.spec.machine import Compiled
from workflow.spec.model import Action
from workflow.training import assign
from workflow.training import curricula as cur


def check_curriculum(ctx: Ctx, compiled: Compiled, rec: Record, user: User,
                     action: Action) -> None:
    cap = compiled.definition.capabilities.curriculum
    if cap is not None:
        cur.check(ctx.session, ctx.registry, cap, rec.data)


def _date(value: object) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def assign_training(ctx: Ctx, compiled: Compiled, rec: Record, user: User,
                    action: Action) -> None:
    d = compiled.definition
    why = f"training matrix: {rec.number} entered {d.states[rec.state].label}"
    days = action.params.get("due_days")
    curriculum_cap = d.capabilities.curriculum
    if curriculum_cap is not None:
        items = cur.items_of(curriculum_cap, rec.number, rec.data)
        if days:
            items = tuple(cur.Required(i.document, i.kind, int(days), i.curriculum, i.role)
                          for i in items)
        role = str(rec.data.get(curriculum_cap.role) or "")
        assign.for_curriculum(ctx, cur.Curriculum(rec.id, rec.number, rec.title, role, items),
                              why)
    doc_cap = d.capabilities.document
    if doc_cap is not None:
        target = assign.Target(rec.id, rec.number, str(rec.data.get(doc_cap.number) or ""),
                               str(rec.data.get(doc_cap.version) or ""),
                               _date(rec.data.get(doc_cap.effective_date or "")), rec.workflow_key)
        if target.number and target.version:
            assign.for_version(ctx, target, why, due_days=int(days) if days else None)


def on_role_change(ctx: Ctx, change: RoleChange) -> None:
    """The role hook: assign on grant, cancel on revoke (same unit as the grant)."""
    if change.granted:
        assign.for_person(ctx, change.username, change.role,
                          f"training matrix: role {change.role} granted to {change.username} "
                          f"by {change.actor}")
    else:
        assign.cancel_unrequired(ctx, change.username,
                                 f"role {change.role} revoked from {change.username} by "
                                 f"{change.actor}: {change.reason}")


#: the action kinds the training matrix adds
ACTIONS: Mapping[str, ActionKind] = {"check_curriculum": check_curriculum,
                                     "assign_training": assign_training}
