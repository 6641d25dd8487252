"""User administration commands, shared by ``qms users``/``qms tokens`` and the admin pages.

One function per command: create a user, grant and revoke a role, deactivate, unlock, reset
the authenticator, issue a temporary password; service accounts and their API tokens. Each
opens one unit of work on the engine it is given and acts as ``actor``, a username
(``SYSTEM_USERNAME`` from the command line, where the operator is named in the reason). Rules
are checked here once, whichever interface asks, and broken rules raise WorkflowError with a
message an administrator can act on. Reasons are recorded as given.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import clock
from workflow.db.models import GrantRequest, User, UserSession
from workflow.db.uow import Units
from workflow.errors import GrantRefused, WorkflowError
from workflow.identity import grants, lockout, passwords, totp
from workflow.identity import tokens as api_tokens
from workflow.identity import users as identity
from workflow.identity.policy import Policy

#: the role that administers accounts and grants (the admin pages, dead letters)
ADMIN_ROLE = grants.ADMIN_ROLE


@dataclass(frozen=True)
class NewUser:
    """A created account and its temporary password (shown once, never stored in clear)."""

    username: str
    password: str
    #: roles that await a second administrator's approval
    pending: tuple[str, ...] = ()


@dataclass(frozen=True)
class Account:
    """A user as administrators list them."""

    username: str
    full_name: str
    active: bool
    locked: bool
    totp_enrolled: bool
    roles: tuple[str, ...]


def temporary_password() -> str:
    """A generated password the user must change at next login."""
    return f"Tmp-{secrets.token_urlsafe(12)}"


def end_of_day(day: date) -> datetime:
    """A grant that expires "on" ``day`` ends at the end of that day, UTC."""
    return clock.end_of_day(day)


def acting_user(session: Session, actor: str) -> User:
    """The administrator acting: the system user (created on first use) for the command
    line, otherwise an active user."""
    if actor == identity.SYSTEM_USERNAME:
        return identity.system_user(session)
    return identity.get_user(session, actor)


def create_user(engine: Units, username: str, full_name: str, *, actor: str, reason: str,
                policy: Policy, email: str = "", timezone: str | None = None,
                roles: tuple[str, ...] = (), password: str | None = None) -> NewUser:
    """Create a user with a temporary password (``password``, or a generated one) that must be
    changed at first login, and grant ``roles``."""
    temp = temporary_password() if password is None else password
    with engine.unit() as s:
        admin = acting_user(s, actor)
        user = identity.create_user(s, username, full_name, email=email, timezone=timezone,
                                    actor=admin, reason=reason)
        passwords.set_password(s, user, temp, actor=admin, policy=policy, reason=reason,
                          temporary=True)
        cat = grants.catalogue(s)
        pending = [role for role in roles
                   if isinstance(grants.grant(s, cat, user, role, actor=admin, reason=reason),
                                 GrantRequest)]
        return NewUser(user.username, temp, tuple(pending))


def grant_role(engine: Units, username: str, role: str, *, actor: str, reason: str,
               expires_on: date | None = None) -> int | None:
    """Grant ``role`` to an active user, until the end of ``expires_on`` (UTC) if given, by
    the rules of :mod:`workflow.identity.grants`. Returns None when granted, or the number of
    the grant request a second administrator must approve (privileged roles)."""
    with engine.unit() as s:
        user = identity.get_user(s, username)
        done = grants.grant(s, grants.catalogue(s), user, role, actor=acting_user(s, actor),
                            reason=reason,
                            expires_at=end_of_day(expires_on) if expires_on else None)
        return done.id if isinstance(done, GrantRequest) else None


def approve_grant(engine: Units, request_id: int, *, actor: str, reason: str) -> str:
    """A second administrator approves grant request ``request_id``; returns "role to user"."""
    with engine.unit() as s:
        g = grants.approve(s, grants.catalogue(s), request_id,
                           admin=identity.get_user(s, actor), reason=reason)
        user = s.get(User, g.user_id)
        return f"{g.role} to {user.username if user else '?'}"


def reject_grant(engine: Units, request_id: int, *, actor: str, reason: str) -> str:
    """A second administrator rejects grant request ``request_id``."""
    with engine.unit() as s:
        req = grants.reject(s, request_id, admin=identity.get_user(s, actor), reason=reason)
        user = s.get(User, req.user_id)
        return f"{req.role} to {user.username if user else '?'}"


def access_review(engine: Units) -> grants.AccessReview:
    """Privileged and dormant accounts and pending grant requests (the access review)."""
    with engine.reader() as s:
        return grants.access_review(s)


def revoke_role(engine: Units, username: str, role: str, *, actor: str, reason: str) -> None:
    """Revoke ``role`` from a user (effective at once); refused when they do not hold it."""
    with engine.unit() as s:
        n = identity.revoke_role(s, identity.get_user(s, username, active=False), role,
                                 actor=acting_user(s, actor), reason=reason)
        if not n:
            raise WorkflowError(f"{username} does not hold the role {role!r}.")


def deactivate_user(engine: Units, username: str, *, actor: str, reason: str) -> None:
    """Deactivate a user: no login, no signing, open sessions end; past signatures stay
    valid. An administrator cannot deactivate their own account."""
    with engine.unit() as s:
        user = identity.get_user(s, username, active=False)
        admin = acting_user(s, actor)
        if user.id == admin.id:
            raise WorkflowError("You cannot deactivate your own account.")
        identity.deactivate_user(s, user, actor=admin, reason=reason)


def unlock(engine: Units, username: str, *, actor: str, reason: str) -> None:
    """Unlock an account locked after failed attempts."""
    lockout.unlock(engine, username, actor=actor, reason=reason)


def reset_totp(engine: Units, username: str, *, actor: str, reason: str) -> None:
    """Revoke a user's authenticator and recovery codes; they enrol again at next login."""
    totp.reset_totp(engine, username, actor=actor, reason=reason)


def end_sessions_of(engine: Units, username: str, *, actor: str, reason: str,
                    session_id: int | None = None) -> int:
    """An administrator ends a user's sessions (one, or all), with a reason; audited
    (``sessions_ended``, naming the administrator). Returns how many were ended."""
    if not reason.strip():
        raise WorkflowError("A reason is required to end someone's sessions.")
    with engine.unit() as session:
        user = identity.get_user(session, username, active=False)
        admin = acting_user(session, actor)
        if session_id is not None:
            row = session.get(UserSession, session_id)
            if row is None or row.user_id != user.id or row.ended_at is not None:
                raise WorkflowError(f"{user.username} has no open session #{session_id}.")
        n = identity.end_sessions(session, user, reason="ended by an administrator",
                                  only=session_id, actor=admin, why=reason.strip())
        if not n:
            raise WorkflowError(f"{user.username} has no open session.")
        return n


def issue_temporary_password(engine: Units, username: str, *, actor: str, reason: str,
                             policy: Policy) -> str:
    """Give an active user a new temporary password (returned, shown once)."""
    temp = temporary_password()
    with engine.unit() as s:
        passwords.set_password(s, identity.get_user(s, username), temp, actor=acting_user(s, actor),
                          policy=policy, reason=reason, temporary=True)
    return temp


def list_accounts(engine: Units) -> list[Account]:
    """Every person's and service's account (not the system user), by username."""
    with engine.reader() as s:
        users = s.execute(select(User).where(User.is_system.is_(False))
                          .order_by(User.username)).scalars().all()
        return [Account(u.username, u.full_name, u.active, lockout.is_locked(u),
                        u.totp_enabled_at is not None, tuple(sorted(identity.roles_of(s, u))))
                for u in users]


# ------------------------------------------------------------------ service accounts, tokens


def create_service_account(engine: Units, username: str, full_name: str, *,
                           roles: tuple[str, ...], actor: str, reason: str) -> None:
    """An account for another system: no password, it acts only through its API tokens; it
    may hold only the roles allowed for systems (QMS_SERVICE_ACCOUNT_ROLES)."""
    with engine.unit() as s:
        cat = grants.catalogue(s)
        refused = sorted(r for r in roles if r not in cat.service)
        if refused:
            raise GrantRefused(
                f"Service accounts may hold only: {', '.join(sorted(cat.service)) or 'none'} "
                f"(QMS_SERVICE_ACCOUNT_ROLES); {', '.join(refused)} cannot be given to "
                f"{username}.")
        api_tokens.create_service_account(s, username, full_name, roles=roles,
                                          actor=acting_user(s, actor), reason=reason)


def create_token(engine: Units, username: str, *, actor: str, name: str,
                 scopes: tuple[str, ...], expires_in_days: int,
                 reason: str) -> api_tokens.CreatedToken:
    """An API token for ``username``; its secret is in the result and nowhere else."""
    with engine.unit() as s:
        return api_tokens.create_token(s, identity.get_user(s, username),
                                       actor=acting_user(s, actor), name=name, scopes=scopes,
                                       expires_in_days=expires_in_days, reason=reason)


def list_tokens(engine: Units, username: str | None = None) -> list[api_tokens.TokenInfo]:
    """Tokens (never their secrets) of ``username``, or of everyone; newest first."""
    with engine.reader() as s:
        owner = identity.get_user(s, username, active=False) if username else None
        return api_tokens.list_tokens(s, owner)


def revoke_token(engine: Units, token: str, *, actor: str, reason: str) -> str:
    """Revoke a token (by number or prefix) at once; returns its prefix."""
    with engine.unit() as s:
        row = api_tokens.find_token(s, token)
        api_tokens.revoke_token(s, row, actor=acting_user(s, actor), reason=reason)
        return row.prefix
