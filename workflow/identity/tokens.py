"""Personal API tokens (the JSON API's credentials; no Flask here).

* A token is ``qms_`` + 43 random URL-safe characters, shown once when created; only its
  SHA-256 and a short prefix (to recognise it in lists) are stored.
* Scopes: ``read`` (GET), ``write`` (create records, fire transitions), ``sign`` (fire a
  transition that carries a signature; needs ``write`` too). A token never signs by itself:
  a signed step still needs the signer's password (and TOTP code) in the request body, and
  the engine's Part 11 verifier checks them like in the UI (R-P11-200-1).
* Every token expires (at most :data:`MAX_DAYS` days); it can be revoked at once by its
  owner or an administrator (R-P11-300c-1); the owner's own path (:func:`revoke_own_token`,
  the account page) refuses anyone else's token, an administrator's too. Creation and
  revocation are audited on the system chain (R-A11-12-1); every use acts as the token's
  user, so the record audit trail names that person or service account (R-P11-10h-1).
* A user creates tokens for themselves. An administrator (or the ``qms`` command line)
  creates tokens only for *service accounts*: active accounts without a password, which can
  never log in or sign (R-P11-100a-2). Nobody can create a token for another person.

Functions taking a ``session`` only flush; those taking an ``engine`` run their own unit.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from workflow import clock
from workflow.audit import trail as audit
from workflow.db.models import ApiToken, RoleGrant, User
from workflow.db.seals import seal_ok
from workflow.db.uow import Units
from workflow.errors import NotAuthorized, TokenError, TokenRejected
from workflow.identity import users as identity
from workflow.identity.lockout import is_locked, locked_error

SCOPES = ("read", "write", "sign")
DEFAULT_DAYS = 90
MAX_DAYS = 366
TOKEN_PREFIX = "qms_"
PREFIX_LENGTH = 12  # "qms_" + 8 random characters, stored to recognise a token
#: last_used_at is written at most once per this interval (a read needs no write otherwise)
TOUCH_EVERY = timedelta(seconds=60)
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")
ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class TokenInfo:
    """A token as shown in lists (never the secret)."""

    id: int
    prefix: str
    name: str
    username: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    suspended_at: datetime | None = None
    suspend_reason: str | None = None

    def status(self, now: datetime | None = None) -> str:
        now = now or clock.now()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.suspended_at is not None:
            return "suspended"
        return "active"


@dataclass(frozen=True)
class CreatedToken:
    """The result of creating a token: ``secret`` is shown once and never stored."""

    secret: str
    info: TokenInfo


@dataclass(frozen=True)
class Caller:
    """Who an API request acts as, after a token was accepted."""

    token_id: int
    prefix: str
    user_id: int
    username: str
    full_name: str
    scopes: frozenset[str]
    roles: frozenset[str]


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_service_account(user: User) -> bool:
    """An account without a password: it can neither log in nor sign."""
    return not user.is_system and user.password_hash is None


def _parse_scopes(scopes: object) -> tuple[str, ...]:
    if isinstance(scopes, str):
        scopes = scopes.replace(",", " ").split()
    items = [str(s).strip().lower() for s in (scopes or ())]  # type: ignore[union-attr]
    bad = sorted({s for s in items if s not in SCOPES})
    if bad:
        raise TokenError(f"Unknown scope(s) {', '.join(bad)}; choose from {', '.join(SCOPES)}.")
    chosen = tuple(s for s in SCOPES if s in items)
    if not chosen:
        raise TokenError(f"Choose at least one scope ({', '.join(SCOPES)}).")
    if "sign" in chosen and "write" not in chosen:
        raise TokenError("The 'sign' scope needs the 'write' scope too (signing fires a step).")
    return chosen


def _info(row: ApiToken, username: str, created_by: str) -> TokenInfo:
    return TokenInfo(row.id, row.prefix, row.name, username, tuple(row.scopes.split()),
                     row.created_at, created_by, row.expires_at, row.revoked_at,
                     row.last_used_at, row.suspended_at, row.suspend_reason)


def create_token(session: Session, owner: User, *, actor: User, name: str,
                 scopes: object, expires_in_days: int = DEFAULT_DAYS,
                 reason: str = "") -> CreatedToken:
    """Create a token for ``owner``; the secret is in the result and nowhere else.

    Raises:
        NotAuthorized: ``actor`` is neither ``owner`` nor an administrator creating a token
            for a service account.
        TokenError: bad name, scopes or expiry.
    """
    now = clock.now()
    if owner.is_system:
        raise NotAuthorized("The engine's system account cannot hold API tokens.")
    if not owner.active:
        raise NotAuthorized(f"{owner.username} is deactivated and cannot hold API tokens.")
    if actor.id != owner.id:
        admin = actor.is_system or ADMIN_ROLE in identity.roles_of(session, actor, now)
        if not admin:
            raise NotAuthorized("You can create API tokens only for yourself.")
        if not is_service_account(owner):
            raise NotAuthorized(
                f"{owner.username} is a person's account: only they can create their own "
                "tokens (an administrator creates tokens for service accounts only).")
        if not (reason or "").strip():
            raise TokenError("A reason is required to create a token for a service account.")
    name = (name or "").strip()
    if not _NAME.match(name):
        raise TokenError("Give the token a name of 1-100 characters (e.g. 'LIMS production').")
    chosen = _parse_scopes(scopes)
    if "sign" in chosen and is_service_account(owner):
        raise TokenError(f"{owner.username} is a service account: it has no password and can "
                         "never sign, so a 'sign' scope is refused.")
    try:
        days = int(expires_in_days)
    except (TypeError, ValueError):
        raise TokenError("The expiry must be a whole number of days.") from None
    if not 1 <= days <= MAX_DAYS:
        raise TokenError(f"A token expires after 1 to {MAX_DAYS} days.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=owner.id, name=name, token_hash=token_hash(secret),
                   prefix=secret[:PREFIX_LENGTH], scopes=" ".join(chosen), created_at=now,
                   created_by_id=actor.id, expires_at=now + timedelta(days=days))
    session.add(row)
    session.flush()
    audit.system_event(session, at=now, actor=actor, action="api_token_created",
                       changes={"username": owner.username, "token_id": row.id,
                                "prefix": row.prefix, "name": name, "scopes": list(chosen),
                                "expires_at": row.expires_at},
                       reason=(reason or "").strip() or None)
    return CreatedToken(secret, _info(row, owner.username, actor.username))


def find_token(session: Session, ref: str | int) -> ApiToken:
    """A token by id or by its prefix (``qms_AbCdEfGh``)."""
    ref_s = str(ref).strip()
    if ref_s.isdigit():
        row = session.get(ApiToken, int(ref_s))
        if row is not None:
            return row
        raise TokenError(f"There is no API token #{ref_s}.")
    rows = session.execute(select(ApiToken).where(ApiToken.prefix == ref_s[:PREFIX_LENGTH])
                           ).scalars().all()
    if not rows:
        raise TokenError(f"There is no API token {ref_s!r}.")
    if len(rows) > 1:
        raise TokenError(f"Several tokens start with {ref_s!r}; give the token's number.")
    return rows[0]


def revoke_token(session: Session, row: ApiToken, *, actor: User, reason: str = "") -> None:
    """Revoke at once (its owner, or an administrator with a reason). Audited."""
    now = clock.now()
    if actor.id != row.user_id:
        admin = actor.is_system or ADMIN_ROLE in identity.roles_of(session, actor, now)
        if not admin:
            raise NotAuthorized("You can revoke only your own API tokens.")
        if not (reason or "").strip():
            raise TokenError("A reason is required to revoke someone else's token.")
    if row.revoked_at is not None:
        raise TokenError(f"Token {row.prefix} is already revoked.")
    row.revoked_at = now
    row.revoked_by_id = actor.id
    owner = session.get(User, row.user_id)
    audit.system_event(session, at=now, actor=actor, action="api_token_revoked",
                       changes={"username": owner.username if owner else None,
                                "token_id": row.id, "prefix": row.prefix, "name": row.name},
                       reason=(reason or "").strip() or None)


def revoke_own_token(session: Session, ref: str | int, *, actor: User,
                     reason: str = "revoked by its owner") -> ApiToken:
    """The owner revokes one of their own tokens (the account page); returns it.

    Raises:
        NotAuthorized: the token belongs to someone else - refused even for an administrator,
            and nothing about that token is changed or revealed.
        TokenError: no such token, or it is already revoked.
    """
    row = find_token(session, ref)
    if row.user_id != actor.id:
        raise NotAuthorized("There is no such token of yours.")
    revoke_token(session, row, actor=actor, reason=reason)
    return row


def suspend_tokens(session: Session, owner: User, *, actor: User, reason: str) -> list[int]:
    """Suspend the owner's usable tokens (not revoked, not expired, not suspended) after an
    administrator reset their password or authenticator: whoever took over the account may
    have made them. They answer 401 ``token_suspended`` until the owner confirms each on the
    account page (:func:`confirm_own`). Through the ORM, so each row is sealed again (the
    seal covers ``suspended_at``). Audited (``api_tokens_suspended``); returns their ids."""
    now = clock.now()
    rows = session.execute(
        select(ApiToken).where(ApiToken.user_id == owner.id, ApiToken.revoked_at.is_(None),
                               ApiToken.suspended_at.is_(None))
    ).scalars().all()
    rows = [r for r in rows if r.expires_at is None or r.expires_at > now]
    for row in rows:
        row.suspended_at = now
        row.suspend_reason = reason[:200]
    if rows:
        audit.system_event(session, at=now, actor=actor, action="api_tokens_suspended",
                           changes={"username": owner.username,
                                    "token_ids": [r.id for r in rows],
                                    "prefixes": [r.prefix for r in rows]},
                           reason=reason)
    return [r.id for r in rows]


def confirm_own(engine: Units, username: str, ref: str | int) -> str:
    """The owner confirms a suspended token of theirs (the account page): it works again.
    Refused for anyone else's token and for a token that is not suspended. Audited
    (``api_token_confirmed``); returns its prefix."""
    with engine.unit() as session:
        me = identity.get_user(session, username)
        row = find_token(session, ref)
        if row.user_id != me.id:
            raise NotAuthorized("There is no such token of yours.")
        if row.suspended_at is None:
            raise TokenError(f"Token {row.prefix} is not suspended.")
        if row.revoked_at is not None:
            raise TokenError(f"Token {row.prefix} is revoked; create a new one.")
        now = clock.now()
        audit.system_event(session, at=now, actor=me, action="api_token_confirmed",
                           changes={"username": me.username, "token_id": row.id,
                                    "prefix": row.prefix,
                                    "suspended_at": row.suspended_at})
        row.suspended_at = None
        row.suspend_reason = None
        return row.prefix


def list_tokens(session: Session, owner: User | None = None) -> list[TokenInfo]:
    """Tokens of ``owner`` (all tokens when None), newest first."""
    creator = User.__table__.alias("creator")
    q = (select(ApiToken, User.username, creator.c.username)
         .join(User, User.id == ApiToken.user_id)
         .join(creator, creator.c.id == ApiToken.created_by_id)
         .order_by(ApiToken.id.desc()))
    if owner is not None:
        q = q.where(ApiToken.user_id == owner.id)
    return [_info(row, u, c) for row, u, c in session.execute(q)]


def create_service_account(session: Session, username: str, full_name: str, *,
                           roles: tuple[str, ...], actor: User, reason: str,
                           email: str = "") -> User:
    """An account for another system (LIMS, HR...): no password, so it can never log in or
    sign; it acts only through the tokens an administrator creates for it. Audited."""
    if not (reason or "").strip():
        raise TokenError("A reason is required to create a service account.")
    user = identity.create_user(session, username, full_name, email=email, actor=actor,
                                reason=reason)
    for role in roles:
        identity.grant_role(session, user, role, actor=actor, reason=reason)
    return user


# ------------------------------------------------------------------ authentication

# the token, its user and the user's active grants in one statement (a row per grant)
_BY_HASH = select(ApiToken, User, *identity.GRANT_COLUMNS).join(
    User, User.id == ApiToken.user_id).outerjoin(RoleGrant, identity.GRANTS_JOIN).where(
    ApiToken.token_hash == bindparam("h"))
_TOUCH = update(ApiToken.__table__).where(ApiToken.__table__.c.id == bindparam("tid")) \
    .values(last_used_at=bindparam("now"))


def create_own_token(engine: Units, username: str, *, name: str, scopes: object,
                     expires_in_days: int = DEFAULT_DAYS) -> CreatedToken:
    """A person creates a token for themselves (the account page), in its own unit."""
    with engine.unit() as session:
        me = identity.get_user(session, username)
        return create_token(session, me, actor=me, name=name, scopes=scopes,
                            expires_in_days=expires_in_days)


def revoke_own(engine: Units, username: str, ref: str | int) -> str:
    """:func:`revoke_own_token` in its own unit; returns the revoked token's prefix."""
    with engine.unit() as session:
        me = identity.get_user(session, username)
        return revoke_own_token(session, ref, actor=me).prefix


def authenticate(engine: Units, secret: str | None, *,
                 session: Session | None = None) -> Caller:
    """The caller a presented token stands for; raises :class:`TokenRejected`.

    The token's user must still be active and not locked: deactivation and lockout stop
    their tokens at once. ``last_used_at`` is updated (at most once a minute, in a unit of
    its own). ``session``: the caller's read session (one per API request), else a read
    unit of its own.
    """
    if not secret:
        raise TokenRejected("missing", "This API needs an 'Authorization: Bearer <token>' "
                                       "header (create a token under API tokens).")
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        raise TokenRejected("malformed", "The bearer token is not a QMS API token.")
    now = clock.now()
    with nullcontext(session) if session is not None else engine.reader() as session:
        rows = session.execute(_BY_HASH, {"h": token_hash(secret), "at": now}).all()
        if not rows:
            raise TokenRejected("unknown", "The API token is not valid.")
        row, user = rows[0][0], rows[0][1]
        if not seal_ok(engine.signing_key, "api_tokens", row):
            raise TokenRejected("tampered", f"The API token {row.prefix} fails its integrity "
                                            "check (changed outside the application).")
        if not seal_ok(engine.signing_key, "users", user):
            raise TokenRejected("tampered", f"The account {user.username} fails its integrity "
                                            "check (changed outside the application).")
        if row.revoked_at is not None:
            raise TokenRejected("revoked", f"The API token {row.prefix} was revoked.")
        if row.expires_at is not None and row.expires_at <= now:
            raise TokenRejected("expired", f"The API token {row.prefix} has expired; create "
                                           "a new one.")
        if row.suspended_at is not None:
            raise TokenRejected("suspended", f"The API token {row.prefix} is suspended since "
                                             "an administrator reset its owner's password or "
                                             "authenticator; its owner confirms it under API "
                                             "tokens on their account page.")
        if not user.active or user.is_system:
            raise TokenRejected("inactive_user", f"The account {user.username} is deactivated.")
        if is_locked(user, now):
            raise locked_error(user)
        roles = identity.held_roles(session, user, now, rows)
        caller = Caller(row.id, row.prefix, user.id, user.username, user.full_name,
                        frozenset(row.scopes.split()), frozenset(roles))
        stale = row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY
    if stale:
        with engine.unit() as session:
            session.execute(_TOUCH, {"tid": caller.token_id, "now": now})
    return caller
