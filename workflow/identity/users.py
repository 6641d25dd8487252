"""Users and role grants (the minimal model the engine needs; Part 11 credentials, lockout
and TOTP are added by the identity issue without reshaping this).

Functions taking a ``session`` only flush; the caller's unit of work (``Engine.unit()``)
commits. Those taking an ``engine`` are commands that run their own unit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from workflow import clock, rules
from workflow import config as qms_config
from workflow.audit import trail as audit
from workflow.db.base import from_row
from workflow.db.models import LoginChallenge, RoleGrant, User, UserSession
from workflow.db.seals import SEALED_COLUMNS
from workflow.db.uow import READ_ONLY, Units, check_key, connection
from workflow.errors import (
    InactiveUser,
    UnknownUser,
    UsernameTaken,
    ValidationFailed,
    WorkflowError,
)

USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
SYSTEM_USERNAME = "system"


# Statements on the engine's hot path are built once: building a statement and computing its
# cache key costs more than running it (measured 40-90 us per call, on every transition).
_USER_BY_NAME = select(User).where(func.lower(User.username) == bindparam("username"))
_grants = RoleGrant.__table__.c
# the grant rows with their sealed columns: a grant counts only when its seal holds
_GRANTS_OF = select(*(_grants[c] for c in (*SEALED_COLUMNS["role_grants"], "seal"))).where(
    _grants.user_id == bindparam("user_id"), rules.active_grant_clause(bindparam("at")))


# the acting user and their active grants in one statement (the engine's every step)
# (Core columns: the user object is built from them, without the ORM's loading)
_users = User.__table__.c
_USER_COLUMNS = tuple(c.name for c in User.__table__.columns)
_ACTOR = select(User.__table__,
                *(_grants[c].label("g_" + c) for c in (*SEALED_COLUMNS["role_grants"], "seal"))
                ).select_from(User.__table__.outerjoin(RoleGrant.__table__, and_(
                    _grants.user_id == _users.id, rules.active_grant_clause(bindparam("at"))))
                ).where(func.lower(_users.username) == bindparam("username"))


#: per read unit (one web or API request): users by lower-case username, and the roles read
#: per user id with the time they were read for - a request reads a person's row and grants
#: once, however many checks ask (issue 18: the API read the grants 4-5 times a request).
#: Only a read unit caches: it never writes, and its answers are one snapshot's anyway; a
#: write unit always reads afresh (a grant it makes counts at once).
_READ_CACHE = "qms_read_people"


class _ReadCache:
    def __init__(self) -> None:
        self.names: dict[str, User] = {}
        self.roles: dict[int, tuple[datetime, frozenset[str]]] = {}


def _read_cache(session: Session) -> _ReadCache | None:
    if not session.info.get(READ_ONLY):
        return None
    cache: _ReadCache = session.info.setdefault(_READ_CACHE, _ReadCache())
    return cache


def find_user(session: Session, username: str) -> User | None:
    cache = _read_cache(session)
    name = username.lower()
    if cache is not None and (hit := cache.names.get(name)) is not None:
        return hit
    user = session.execute(_USER_BY_NAME, {"username": name}).scalar_one_or_none()
    if cache is not None and user is not None:
        cache.names[name] = user
    return user


def lock_user(session: Session, user: User | int) -> User | None:
    """The user's row, locked for this transaction (``SELECT ... FOR UPDATE`` on PostgreSQL;
    SQLite's writer already holds the database lock) and re-read, so that counters and
    one-time credentials (failed attempts, the last TOTP step, recovery codes) are decided
    by one transaction at a time (issue 14 item 3)."""
    user_id = user if isinstance(user, int) else user.id
    return session.execute(
        select(User).where(User.id == user_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def get_user(session: Session, username: str, *, active: bool = True) -> User:
    user = find_user(session, username)
    if user is None:
        raise UnknownUser(username)
    if active and not user.active:
        raise InactiveUser(user.username)
    return user


def get_actor(session: Session, username: str, at: datetime) -> tuple[User, set[str]]:
    """The active user ``username`` and the roles they hold at ``at`` (as :func:`roles_of`:
    active grants whose seal holds), read in one statement.

    Raises:
        UnknownUser, InactiveUser.
    """
    rows = connection(session).execute(_ACTOR, {"username": username.lower(), "at": at}).all()
    if not rows:
        raise UnknownUser(username)
    first = rows[0]._mapping
    user = session.identity_map.get(identity_key(User, first["id"]))
    if user is None:
        # the row as the session would have loaded it: persistent, unchanged
        user = from_row(User, {c: first[c] for c in _USER_COLUMNS})
        make_transient_to_detached(user)
        session.add(user)
    if not user.active:
        raise InactiveUser(user.username)
    return user, held_roles(session, user, at, rows)


#: a user's grants active at the bind parameter ``at``, joined beside the user's row
#: (outer join: a user without grants is one row with NULLs); read with GRANT_COLUMNS
GRANTS_JOIN = and_(_grants.user_id == _users.id, rules.active_grant_clause(bindparam("at")))
_GRANT_NAMES = (*SEALED_COLUMNS["role_grants"], "seal")
GRANT_COLUMNS = tuple(_grants[c].label("g_" + c) for c in _GRANT_NAMES)


def held_roles(session: Session, user: User, at: datetime, rows: Iterable[Any]) -> set[str]:
    """The roles ``user`` holds at ``at`` from their grants read beside their row (the
    :data:`GRANT_COLUMNS` of each row, NULL for the outer join's empty side): what
    :func:`roles_of` gives, without a statement of its own. Like it, a grant whose seal
    fails is not honoured (and remembered for :func:`untrusted_roles`), and in a read unit
    the roles answer later look-ups of the same moment."""
    if not user.active:
        return set()
    key = check_key(session)
    trusted: set[str] = set()
    forged: set[str] = set()
    for row in rows:
        m = row._mapping
        if m["g_id"] is None:
            continue  # no active grant (the outer join's empty side)
        grant = SimpleNamespace(**{c: m["g_" + c] for c in _GRANT_NAMES})
        (trusted if rules.grant_trusted(key, grant) else forged).add(grant.role)
    _remember_roles(session, user, at, trusted, forged)
    return trusted


def system_user(session: Session) -> User:
    user = find_user(session, SYSTEM_USERNAME)
    if user is None:
        user = User(username=SYSTEM_USERNAME, full_name="System (scheduler and engine)",
                    email="", timezone="UTC", active=True, is_system=True,
                    created_at=clock.now())
        session.add(user)
        session.flush()
    return user


def create_user(
    session: Session,
    username: str,
    full_name: str,
    *,
    email: str = "",
    timezone: str | None = None,
    actor: User | None = None,
    reason: str = "",
) -> User:
    username = username.strip().lower()
    if not USERNAME.match(username):
        raise WorkflowError(
            f"{username!r} is not a valid username: 2-64 characters, starting with a letter, "
            "using a-z, 0-9, '.', '_' or '-'."
        )
    if not full_name.strip():
        raise WorkflowError("A printed full name is required (it appears on signatures).")
    timezone = (timezone or qms_config.settings().timezone).strip()
    if not qms_config.is_zone(timezone):  # a typo would silently show every time in UTC
        raise ValidationFailed({"timezone": qms_config.zone_problem(timezone)})
    if find_user(session, username) is not None:
        raise UsernameTaken(username)
    now = clock.now()
    user = User(username=username, full_name=full_name.strip(), email=email.strip(),
                timezone=timezone, active=True, is_system=False, created_at=now)
    session.add(user)
    session.flush()
    audit.system_event(session, at=now, actor=actor or system_user(session),
                       action="user_created",
                       changes={"username": [None, username], "full_name": [None, user.full_name],
                                "email": [None, user.email]},
                       reason=reason or None)
    return user


def deactivate_user(session: Session, user: User, *, actor: User, reason: str) -> None:
    if not reason.strip():
        raise WorkflowError("A reason is required to deactivate a user.")
    if not user.active:
        raise WorkflowError(f"{user.username} is already deactivated.")
    lock_user(session, user)  # row before chain head, as a login does
    now = clock.now()
    user.active = False
    user.deactivated_at = now
    # end every open session at once: a deactivated user can neither act nor sign
    end_sessions(session, user, reason="account deactivated")
    audit.system_event(session, at=now, actor=actor, action="user_deactivated",
                       changes={"username": user.username, "active": [True, False]},
                       reason=reason)


def end_sessions(session: Session, user: User, *, reason: str, keep: int | None = None,
                 only: int | None = None, actor: User | None = None,
                 why: str | None = None) -> int:
    """End the user's open login sessions at once (their next request is refused with
    ``reason``); returns how many were ended. ``keep``: the id of a session left open (the
    one a person changes their own password in); ``only``: end just that one. With an
    ``actor`` a ``sessions_ended`` event records who ended how many, why (``why``)."""
    t = UserSession.__table__
    stmt = update(t).where(t.c.user_id == user.id, t.c.ended_at.is_(None))
    if keep is not None:
        stmt = stmt.where(t.c.id != keep)
    if only is not None:
        stmt = stmt.where(t.c.id == only)
    now = clock.now()
    done = session.execute(stmt.values(ended_at=now, end_reason=reason[:40]))
    count = int(done.rowcount)  # type: ignore[attr-defined]
    if only is None and keep is None:
        # a login waiting at its code step is access too: voided with the sessions
        c = LoginChallenge.__table__.c
        session.execute(update(LoginChallenge.__table__)
                        .where(c.user_id == user.id, c.used_at.is_(None)).values(used_at=now))
    if actor is not None and count:
        changes: dict[str, object] = {"username": user.username, "sessions": count,
                                      "end_reason": reason}
        if only is not None:
            changes["session_id"] = only
        audit.system_event(session, at=now, actor=actor, action="sessions_ended",
                           changes=changes, reason=why)
    return count


#: where a write unit keeps what runs when a role grant is written or revoked in it (the
#: Engine puts its role hooks there, e.g. the training matrix); identity never imports them
ROLE_CHANGED = "qms_role_changed"


@dataclass(frozen=True)
class RoleChange:
    """A role granted to or revoked from a person, as the hooks of the unit see it."""

    username: str
    role: str
    granted: bool
    actor: str
    reason: str


def role_changed(session: Session, user: User, role: str, *, granted: bool, actor: User,
                 reason: str) -> None:
    """Run the unit's role hooks (same unit of work: what they write commits or rolls back
    with the grant)."""
    hook = session.info.get(ROLE_CHANGED)
    if hook is not None:
        session.flush()  # the hooks read the grants (with Core statements: no autoflush)
        hook(RoleChange(user.username, role, granted, actor.username, reason))


def grant_role(
    session: Session,
    user: User,
    role: str,
    *,
    actor: User,
    reason: str,
    expires_at: datetime | None = None,
) -> RoleGrant:
    if not user.active:
        raise InactiveUser(user.username)
    if not re.match(r"^[a-z][a-z0-9_]{0,39}$", role):
        raise WorkflowError(f"{role!r} is not a valid role name.")
    if role in roles_of(session, user):
        raise WorkflowError(f"{user.username} already holds the role {role!r}.")
    now = clock.now()
    g = RoleGrant(user_id=user.id, role=role, granted_by_id=actor.id, granted_at=now,
                  reason=reason, expires_at=expires_at)
    session.add(g)
    session.flush()
    audit.system_event(session, at=now, actor=actor, action="role_granted",
                       changes={"username": user.username, "role": [None, role],
                                "expires_at": expires_at},
                       reason=reason or None)
    role_changed(session, user, role, granted=True, actor=actor, reason=reason)
    return g


def revoke_role(session: Session, user: User, role: str, *, actor: User, reason: str) -> int:
    """Revoke every active grant of ``role`` to ``user``; returns how many were revoked."""
    if not reason.strip():
        raise WorkflowError("A reason is required to revoke a role.")
    now = clock.now()
    grants = session.execute(
        select(RoleGrant).where(RoleGrant.user_id == user.id, RoleGrant.role == role,
                                RoleGrant.revoked_at.is_(None))
    ).scalars().all()
    for g in grants:
        g.revoked_at = now
        g.revoked_by_id = actor.id
        g.revoke_reason = reason
    if grants:
        audit.system_event(session, at=now, actor=actor, action="role_revoked",
                           changes={"username": user.username, "role": [role, None]},
                           reason=reason)
        role_changed(session, user, role, granted=False, actor=actor, reason=reason)
    return len(grants)


def roles_of(session: Session, user: User, at: datetime | None = None) -> set[str]:
    """Roles the user holds now: granted, not revoked, not expired, user active, and the
    grant's seal holds (a grant inserted or edited with plain SQL is not honoured; see
    :func:`untrusted_roles`)."""
    if not user.active:
        return set()
    when = at or clock.now()
    cache = _read_cache(session)
    if cache is not None:
        hit = cache.roles.get(user.id)
        # the roles read earlier in this request answer for the same moment (within
        # _SAME_MOMENT of it: one request); another time is read afresh
        if hit is not None and timedelta(0) <= when - hit[0] <= _SAME_MOMENT:
            return set(hit[1])
    key = check_key(session)
    trusted: set[str] = set()
    forged: set[str] = set()
    for g in session.execute(_GRANTS_OF, {"user_id": user.id, "at": when}):
        (trusted if rules.grant_trusted(key, g) else forged).add(g.role)
    _remember_roles(session, user, when, trusted, forged)
    return trusted


def _remember_roles(session: Session, user: User, when: datetime, trusted: set[str],
                    forged: set[str]) -> None:
    session.info.setdefault(_UNTRUSTED, {})[user.id] = forged - trusted
    cache = _read_cache(session)
    if cache is not None:
        cache.roles[user.id] = (when, frozenset(trusted))
        cache.names.setdefault(user.username.lower(), user)


#: how far apart two role look-ups of one read unit may be and still share one read
_SAME_MOMENT = timedelta(seconds=1)


_UNTRUSTED = "qms_untrusted_roles"


def untrusted_roles(session: Session, user: User) -> set[str]:
    """Roles an active grant names for the user that are not honoured because the grant's
    seal is broken, as found by the last :func:`roles_of` of this session (the engine names
    them when it refuses a step)."""
    found = session.info.get(_UNTRUSTED, {})
    if user.id not in found:
        roles_of(session, user)
    return set(session.info.get(_UNTRUSTED, {}).get(user.id, ()))


def set_notify_mode(engine: Units, username: str, mode: str) -> bool:
    """Set how ``username`` gets e-mail notifications (``immediate`` or ``digest``), in its
    own unit; a change is audited (``notify_mode_changed``). Returns whether it changed."""
    with engine.unit() as session:
        user = get_user(session, username)
        if user.notify_mode == mode:
            return False
        audit.system_event(session, at=clock.now(), actor=user, action="notify_mode_changed",
                           changes={"username": user.username,
                                    "notify_mode": [user.notify_mode, mode]})
        user.notify_mode = mode
        return True
