"""Directories of people for forms and pages: who can be picked in a user field, and the
printed names of usernames. Read models: each takes the caller's read session."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow.db.models import User


def people_names(session: Session, usernames: set[str]) -> dict[str, str]:
    """username -> printed name, in one query."""
    if not usernames:
        return {}
    return {u: n for u, n in session.execute(
        select(User.username, User.full_name).where(User.username.in_(sorted(usernames))))}


def pickable_users(session: Session) -> list[tuple[str, str]]:
    """(username, "Full Name (username)") of every active person (not the system user),
    by name: the choices of a user field."""
    rows = session.execute(select(User.username, User.full_name).where(
        User.active.is_(True), User.is_system.is_(False)).order_by(User.full_name)).all()
    return [(u, f"{n} ({u})") for u, n in rows]
