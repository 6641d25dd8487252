"""Published workflow definitions as read models (the caller's read session)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow.db.models import DefinitionVersion
from workflow.registry import Registry
from workflow.spec.model import WorkflowDefinition


def latest_definitions(session: Session, registry: Registry) -> list[WorkflowDefinition]:
    """The newest published version of every workflow, by key."""
    keys = session.execute(select(DefinitionVersion.key).distinct()).scalars().all()
    return [registry.latest(session, k).definition for k in sorted(keys)]


def is_known(session: Session, key: str) -> bool:
    """Whether any version of workflow ``key`` was ever published."""
    return session.execute(select(DefinitionVersion.id).where(
        DefinitionVersion.key == key).limit(1)).first() is not None
