"""Change control's on-enter action kind, given to the Engine by workflow/bootstrap.py (the
engine never imports change control)."""

from __future__ import annotations

from collections.abc import Mapping

from workflow.change_control import publishing
from workflow.db.models import Record, User
from workflow.engine.context import ActionKind, Ctx
from workflow.spec.machine import Compiled
from workflow.spec.model import Action


def publish_draft(ctx: Ctx, compiled: Compiled, rec: Record, user: User, action: Action) -> None:
    """The draft whose id and content hash the record holds becomes the next version, in
    this transaction; refused (and the step rolled back) when the draft changed since
    submission."""
    publishing.publish_from_record(ctx.session, ctx.registry, rec, user, action.params, at=ctx.now)


#: the action kinds change control adds
ACTIONS: Mapping[str, ActionKind] = {"publish_draft": publish_draft}
