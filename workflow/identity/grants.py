"""Segregation of administration: the rules every role grant by an administrator obeys
(issue 14, item 5; R-IAM-1 .. R-IAM-4, R-A11-12-1, R-P11-10g-1).

- **No self-grants**: nobody grants a role to their own account, or approves a grant to it.
- **Declared roles only**: a role must be named by a published workflow definition or by the
  settings (``admin``, the security role, ``QMS_PRIVILEGED_ROLES``, ``QMS_SERVICE_ACCOUNT_ROLES``,
  ``QMS_TOTP_REQUIRED_ROLES``); a typo or an invented role is refused.
- **Incompatible roles** (``QMS_INCOMPATIBLE_ROLES``, default ``admin:qa``): a grant that would
  give one person both roles of a pair (held or awaiting approval) is refused.
- **Service accounts** (other systems, no password) hold only ``QMS_SERVICE_ACCOUNT_ROLES``.
- **Privileged roles** (``admin``, every role that signs in a published definition, and
  ``QMS_PRIVILEGED_ROLES``) are not granted by one administrator: the grant becomes a
  :class:`~workflow.db.models.GrantRequest` that a *second* administrator (not the requester,
  not the grantee) approves or rejects; all three steps are audited. The only exception is
  bootstrapping: when no active administrator exists at all, the command line (the system
  account, with the OS user in the reason) grants directly, and the event says so.

The engine-internal :func:`workflow.identity.users.grant_role` (demo data, dry runs, tests)
does not apply these rules; every administrator-facing path (``qms users``, ``qms tokens
service-account``, the admin pages) goes through :mod:`workflow.identity.admin`, which applies
them here. :func:`access_review` lists the privileged accounts, rule violations that predate
the rules, pending requests and dormant accounts for the periodic access review.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workflow import clock
from workflow import config as qms_config
from workflow.audit import trail as audit
from workflow.db.models import DefinitionVersion, GrantRequest, RoleGrant, User, UserSession
from workflow.errors import GrantRefused, NotAuthorized, WorkflowError
from workflow.identity import users as identity
from workflow.identity.tokens import is_service_account
from workflow.spec.load import published

#: the role that administers accounts and grants
ADMIN_ROLE = "admin"
ROLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


# ------------------------------------------------------------------ the roles there are


@dataclass(frozen=True)
class RoleCatalogue:
    """The roles that can be granted and which of them are privileged."""

    declared: frozenset[str]
    signing: frozenset[str]  # roles that sign in a published definition
    privileged: frozenset[str]
    service: frozenset[str]  # what service accounts may hold
    incompatible: tuple[tuple[str, str], ...]

    def conflicts(self, role: str, held: Iterable[str]) -> list[str]:
        """The roles in ``held`` that ``role`` may not be combined with."""
        have = set(held)
        return sorted({b for a, b in self.incompatible if a == role and b in have} |
                      {a for a, b in self.incompatible if b == role and a in have})


_roles_by_hash: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
_lock = threading.Lock()


def _roles_of_version(row: DefinitionVersion) -> tuple[frozenset[str], frozenset[str]]:
    """(declared roles, signing roles) of a published version, parsed once per process."""
    with _lock:
        hit = _roles_by_hash.get(row.content_hash)
    if hit is not None:
        return hit
    d = published(row)
    signing = {r for t in d.transitions.values() if t.signature for r in t.signature.roles}
    hit = (frozenset(d.roles), frozenset(signing))
    with _lock:
        _roles_by_hash[row.content_hash] = hit
    return hit


def catalogue(session: Session, settings: qms_config.Settings | None = None) -> RoleCatalogue:
    """The role catalogue from the newest version of every published definition and the
    settings."""
    s = settings if settings is not None else qms_config.settings()
    newest = (select(DefinitionVersion.key, func.max(DefinitionVersion.version).label("v"))
              .group_by(DefinitionVersion.key).subquery())
    rows = session.execute(select(DefinitionVersion).join(
        newest, (DefinitionVersion.key == newest.c.key)
        & (DefinitionVersion.version == newest.c.v))).scalars()
    declared: set[str] = set()
    signing: set[str] = set()
    for row in rows:
        roles, signs = _roles_of_version(row)
        declared |= roles
        signing |= signs
    privileged = {ADMIN_ROLE, *signing, *s.privileged_roles}
    declared |= {ADMIN_ROLE, s.security_role, *s.privileged_roles, *s.service_account_roles,
                 *s.totp_required_roles}
    return RoleCatalogue(frozenset(declared), frozenset(signing), frozenset(privileged),
                         frozenset(s.service_account_roles), tuple(s.incompatible_roles))


# ------------------------------------------------------------------ the rules


def pending_roles(session: Session, user: User) -> set[str]:
    """Roles awaiting a second administrator's approval for ``user``."""
    return set(session.execute(select(GrantRequest.role).where(
        GrantRequest.user_id == user.id, GrantRequest.decision == "")).scalars())


def check_grant(session: Session, cat: RoleCatalogue, user: User, role: str,
                actor: User) -> None:
    """Raise :class:`GrantRefused` when ``actor`` may not give ``role`` to ``user``."""
    if actor.id == user.id:
        raise GrantRefused(f"You cannot grant a role to your own account ({role} to "
                           f"{user.username}); another administrator must.")
    if not ROLE_NAME.fullmatch(role):
        raise GrantRefused(f"{role!r} is not a valid role name.")
    if role not in cat.declared:
        raise GrantRefused(f"{role!r} is not a role any published workflow definition or the "
                           "settings declare, so it cannot be granted. Declared roles: "
                           f"{', '.join(sorted(cat.declared))}.")
    if is_service_account(user) and role not in cat.service:
        raise GrantRefused(f"{user.username} is a service account (another system); service "
                           f"accounts may hold only: {', '.join(sorted(cat.service)) or 'none'}"
                           f" (QMS_SERVICE_ACCOUNT_ROLES). {role!r} is not among them.")
    held = identity.roles_of(session, user) | pending_roles(session, user)
    clash = cat.conflicts(role, held)
    if clash:
        raise GrantRefused(f"{user.username} holds (or awaits) {', '.join(clash)}, which may "
                           f"not be combined with {role} (QMS_INCOMPATIBLE_ROLES); revoke it "
                           "first or choose another person.")


def _admins(session: Session) -> list[User]:
    """Active people who hold the admin role now (trusted grants only)."""
    # IN, not JOIN + DISTINCT: PostgreSQL cannot compare the users row's JSON column
    holders = select(RoleGrant.user_id).where(RoleGrant.role == ADMIN_ROLE,
                                              RoleGrant.revoked_at.is_(None))
    users = session.execute(select(User).where(
        User.id.in_(holders), User.active.is_(True), User.is_system.is_(False))).scalars()
    return [u for u in users if ADMIN_ROLE in identity.roles_of(session, u)]


def grant(session: Session, cat: RoleCatalogue, user: User, role: str, *, actor: User,
          reason: str, expires_at: datetime | None = None) -> RoleGrant | GrantRequest:
    """Grant ``role`` after the rules; a privileged role becomes a pending request (returned)
    unless this is the command line bootstrapping the first administrator."""
    if not reason.strip():
        raise WorkflowError("A reason is required to grant a role.")
    if not user.active:
        raise GrantRefused(f"{user.username} is deactivated.")
    check_grant(session, cat, user, role, actor)
    if role in pending_roles(session, user):
        raise GrantRefused(f"A grant of {role} to {user.username} already awaits a second "
                           "administrator's approval.")
    if role in identity.roles_of(session, user):
        raise WorkflowError(f"{user.username} already holds the role {role!r}.")
    if role in cat.privileged:
        if actor.is_system and not _admins(session):
            # bootstrapping: nobody could approve; the command line names the OS user
            return identity.grant_role(session, user, role, actor=actor, expires_at=expires_at,
                                       reason=f"{reason} (no active administrator exists "
                                              "to approve: first administrator)")
        now = clock.now()
        req = GrantRequest(user_id=user.id, role=role, expires_at=expires_at,
                           requested_by_id=actor.id, requested_at=now, reason=reason)
        session.add(req)
        session.flush()
        audit.system_event(session, at=now, actor=actor, action="role_grant_requested",
                           changes={"request": req.id, "username": user.username, "role": role,
                                    "expires_at": expires_at}, reason=reason)
        return req
    return identity.grant_role(session, user, role, actor=actor, reason=reason,
                               expires_at=expires_at)


def _pending(session: Session, request_id: int) -> GrantRequest:
    req = session.get(GrantRequest, request_id)
    if req is None:
        raise WorkflowError(f"There is no grant request #{request_id}.")
    if req.decision:
        raise GrantRefused(f"Grant request #{request_id} was already {req.decision}.")
    return req


def _check_second_admin(session: Session, req: GrantRequest, admin: User) -> None:
    if ADMIN_ROLE not in identity.roles_of(session, admin):
        raise NotAuthorized("Only administrators decide grant requests.",
                            required_roles=(ADMIN_ROLE,))
    if admin.id == req.requested_by_id:
        raise GrantRefused(f"You requested grant #{req.id}; a second administrator must "
                           "decide it.")
    if admin.id == req.user_id:
        raise GrantRefused(f"Grant request #{req.id} is for your own account; another "
                           "administrator must decide it.")


def approve(session: Session, cat: RoleCatalogue, request_id: int, *, admin: User,
            reason: str) -> RoleGrant:
    """A second administrator approves a pending request: the rules are checked again and the
    grant is written (``role_grant_approved`` and ``role_granted``, both by ``admin``)."""
    if not reason.strip():
        raise WorkflowError("A reason is required to approve a grant.")
    req = _pending(session, request_id)
    _check_second_admin(session, req, admin)
    user = session.get(User, req.user_id)
    assert user is not None
    requester = session.get(User, req.requested_by_id)
    check_grant(session, cat, user, req.role, admin)  # again: things may have changed
    now = clock.now()
    req.decision, req.decided_by_id, req.decided_at = "approved", admin.id, now
    req.decision_reason = reason
    audit.system_event(session, at=now, actor=admin, action="role_grant_approved",
                       changes={"request": req.id, "username": user.username, "role": req.role,
                                "requested_by": requester.username if requester else None},
                       reason=reason)
    return identity.grant_role(session, user, req.role, actor=admin, expires_at=req.expires_at,
                               reason=f"{req.reason} (requested by "
                                      f"{requester.username if requester else '?'}, "
                                      f"approved by {admin.username}: {reason})")


def reject(session: Session, request_id: int, *, admin: User, reason: str) -> GrantRequest:
    """A second administrator rejects a pending request (``role_grant_rejected``)."""
    if not reason.strip():
        raise WorkflowError("A reason is required to reject a grant.")
    req = _pending(session, request_id)
    _check_second_admin(session, req, admin)
    user = session.get(User, req.user_id)
    now = clock.now()
    req.decision, req.decided_by_id, req.decided_at = "rejected", admin.id, now
    req.decision_reason = reason
    audit.system_event(session, at=now, actor=admin, action="role_grant_rejected",
                       changes={"request": req.id, "username": user.username if user else None,
                                "role": req.role}, reason=reason)
    return req


# ------------------------------------------------------------------ the access review


@dataclass(frozen=True)
class PendingGrant:
    id: int
    username: str
    role: str
    requested_by: str
    requested_at: datetime
    reason: str
    expires_at: datetime | None


@dataclass(frozen=True)
class ReviewedAccount:
    username: str
    full_name: str
    active: bool
    service: bool
    roles: tuple[str, ...]
    privileged: tuple[str, ...]
    totp: bool
    last_login: datetime | None
    dormant: bool
    problems: tuple[str, ...]  # rules the account breaks (grants older than the rules)


@dataclass(frozen=True)
class AccessReview:
    privileged: tuple[ReviewedAccount, ...]
    dormant: tuple[ReviewedAccount, ...]
    pending: tuple[PendingGrant, ...]
    dormant_days: int
    catalogue: RoleCatalogue


def pending_requests(session: Session, user: User | None = None) -> list[PendingGrant]:
    """Grant requests awaiting a second administrator (of ``user``, or all), oldest first."""
    q = select(GrantRequest).where(GrantRequest.decision == "").order_by(GrantRequest.id)
    if user is not None:
        q = q.where(GrantRequest.user_id == user.id)
    out = []
    for r in session.execute(q).scalars():
        u, by = session.get(User, r.user_id), session.get(User, r.requested_by_id)
        out.append(PendingGrant(r.id, u.username if u else "?", r.role,
                                by.username if by else "?", r.requested_at, r.reason,
                                r.expires_at))
    return out


def access_review(session: Session, settings: qms_config.Settings | None = None
                  ) -> AccessReview:
    """Privileged accounts (with the rules each breaks), dormant accounts (no login in
    ``QMS_DORMANT_DAYS``) and pending grant requests."""
    s = settings if settings is not None else qms_config.settings()
    cat = catalogue(session, s)
    now = clock.now()
    since = now - timedelta(days=s.dormant_days)
    last = dict(session.execute(select(UserSession.user_id, func.max(UserSession.created_at))
                                .group_by(UserSession.user_id)).all())
    privileged, dormant = [], []
    for u in session.execute(select(User).where(User.is_system.is_(False))
                             .order_by(User.username)).scalars():
        roles = tuple(sorted(identity.roles_of(session, u)))
        service = is_service_account(u)
        seen = last.get(u.id)
        is_dormant = u.active and not service and (seen or u.created_at) < since
        problems = []
        for r in roles:
            if r not in cat.declared:
                problems.append(f"holds {r}, which no definition or setting declares")
            if service and r not in cat.service:
                problems.append(f"service account holding {r}")
            problems += [f"holds {r} with {c} (incompatible)" for c in
                         cat.conflicts(r, roles) if r < c]
        acct = ReviewedAccount(u.username, u.full_name, u.active, service, roles,
                               tuple(r for r in roles if r in cat.privileged),
                               u.totp_enabled_at is not None, seen, is_dormant, tuple(problems))
        if acct.privileged or problems:
            privileged.append(acct)
        if is_dormant:
            dormant.append(acct)
    return AccessReview(tuple(privileged), tuple(dormant), tuple(pending_requests(session)),
                        s.dormant_days, cat)
