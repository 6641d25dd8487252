"""Directories of people for forms and pages: who can be picked in a user field, and the
printed names of usernames. Read models: each takes the caller's read session."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow.db.models import RoleGrant, User


def people_names(session: Session, usernames: set[str]) -> dict[str, str]:
    """username -> printed name, in one query."""
    if not usernames:
        return {}
    return {u: n for u, n in session.execute(
        select(User.username, User.full_name).where(User.username.in_(sorted(usernames))))}


def names_by_id(session: Session, ids: set[int]) -> dict[int, str]:
    """user id -> printed name, in one query."""
    if not ids:
        return {}
    return {i: n for i, n in session.execute(
        select(User.id, User.full_name).where(User.id.in_(sorted(ids))))}


def pickable_users(session: Session, *, excluding: int | None = None
                   ) -> list[tuple[str, str]]:
    """(username, "Full Name (username)") of every active person (not the system user; not
    user id ``excluding``), by name: the choices of a user field or a delegation."""
    q = select(User.username, User.full_name).where(User.active.is_(True),
                                                    User.is_system.is_(False))
    if excluding is not None:
        q = q.where(User.id != excluding)
    return [(u, f"{n} ({u})") for u, n in session.execute(q.order_by(User.full_name))]


def accounts(session: Session) -> list[User]:
    """Every account but the system user, by username (the administrators' list)."""
    return list(session.execute(select(User).where(User.is_system.is_(False))
                                .order_by(User.username)).scalars())


def grants_of(session: Session, user: User) -> list[RoleGrant]:
    """Every role grant ``user`` ever had, newest first (revoked ones too)."""
    return list(session.execute(select(RoleGrant).where(RoleGrant.user_id == user.id)
                                .order_by(RoleGrant.granted_at.desc())).scalars())


def person(session: Session, user_id: int) -> User | None:
    """The account with id ``user_id`` (None when there is none)."""
    return session.get(User, user_id)
