"""Published workflow definitions as read models (the caller's read session)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow.db.models import DefinitionVersion, Record, User
from workflow.registry import Registry
from workflow.spec.model import WorkflowDefinition


def latest_definitions(session: Session, registry: Registry) -> list[WorkflowDefinition]:
    """The newest published version of every workflow, by key (one statement, not one a
    workflow: the search and list pages call it on every request)."""
    newest = registry.newest(session)
    return [newest[k] for k in sorted(newest)]


def is_known(session: Session, key: str) -> bool:
    """Whether any version of workflow ``key`` was ever published."""
    return session.execute(select(DefinitionVersion.id).where(
        DefinitionVersion.key == key).limit(1)).first() is not None


def workflow_titles(session: Session) -> dict[str, str]:
    """workflow key -> the title of its newest published version."""
    rows = session.execute(select(DefinitionVersion.key, DefinitionVersion.title)
                           .order_by(DefinitionVersion.key, DefinitionVersion.version)).all()
    return {k: t for k, t in rows}


def versions_by_key(session: Session) -> dict[str, list[DefinitionVersion]]:
    """Every published version, grouped by workflow key, oldest version first."""
    by_key: dict[str, list[DefinitionVersion]] = {}
    for row in session.execute(select(DefinitionVersion).order_by(
            DefinitionVersion.key, DefinitionVersion.version)).scalars():
        by_key.setdefault(row.key, []).append(row)
    return by_key


def versions_of(session: Session, key: str) -> list[DefinitionVersion]:
    """The published versions of ``key``, oldest first."""
    return list(session.execute(select(DefinitionVersion).where(DefinitionVersion.key == key)
                                .order_by(DefinitionVersion.version)).scalars())


def publisher_of(session: Session, row: DefinitionVersion) -> str | None:
    """The username of who published ``row`` (None when not recorded)."""
    if not row.published_by_id:
        return None
    user = session.get(User, row.published_by_id)
    return user.username if user else None


def definition_changes(session: Session, key: str, change_workflow: str) -> list[Record]:
    """The change records (of workflow ``change_workflow``, change control's
    ``definition_change``) about definition ``key``: its approval history."""
    return list(session.execute(select(Record).where(
        Record.workflow_key == change_workflow,
        Record.data["definition"].as_string() == key).order_by(Record.id)).scalars())
