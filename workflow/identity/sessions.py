"""Login and login sessions: password, then the second factor, then a server-side session
row; idle timeout and absolute lifetime end it (R-P11-200-2). A failed login step is counted
toward lockout (:mod:`workflow.identity.lockout`) before the error is raised.

Functions taking a ``session`` only flush; those taking an ``engine`` run their own unit.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import clock
from workflow.audit import trail as audit
from workflow.db.models import LoginChallenge, User, UserSession
from workflow.db.seals import seal_ok
from workflow.db.uow import Units
from workflow.errors import (
    LoginFailed,
    LoginStepExpired,
    SecondFactorFailed,
    SessionEnded,
    TamperedData,
    WorkflowError,
)
from workflow.identity import throttle
from workflow.identity import users as identity
from workflow.identity.lockout import is_locked, lift_lapsed, record_failure
from workflow.identity.passwords import password_expired, password_matches, spend_like_a_check
from workflow.identity.policy import Policy
from workflow.identity.totp import check_second_factor, totp_enrolled, totp_required

# --------------------------------------------------------------------------- login


@dataclass(frozen=True)
class PasswordChecked:
    """Password accepted; what the login still needs before a session starts."""

    user_id: int
    username: str
    needs_totp: bool  # enrolled: enter a code
    needs_enrolment: bool  # required by role policy but not enrolled yet
    must_change_password: bool
    #: the secret of the server-side second-factor step (when ``needs_totp``): the browser
    #: keeps it and presents it with the code (:func:`check_login_totp`)
    challenge: str | None = None
    #: after the second step: "totp" or "recovery" (the kind of code accepted)
    second_factor: str | None = None


def password_version(user: User) -> str:
    """What binds a login step to the password it was issued for: any password change
    (the user's own or an administrator's reset) gives another value."""
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()


def login_limits(policy: Policy) -> throttle.Limits:
    return throttle.Limits(policy.login_rate_per_ip, policy.login_rate_per_account,
                           policy.login_rate_window_seconds)


def check_login_password(engine: Units, username: str, password: str,
                         policy: Policy | None = None, *, ip: str = "") -> PasswordChecked:
    """First login step. A failure is recorded (and may lock the account) before raising.

    * Throttled first (:func:`throttle.check_login`: per client address and per typed
      username, shared by all workers): over the limit, :class:`LoginThrottled` and nothing
      is checked or recorded.
    * Every refusal is :class:`LoginFailed`, with one message, and costs one password hash
      check (a dummy one for unknown, deactivated or locked accounts): neither the answer
      nor its timing tells whether the account exists or is locked (issue 14 item 4).
    * The account row is locked while its password is checked, so parallel attempts on one
      account are checked one after another and the lockout threshold holds exactly (on
      PostgreSQL too: issue 14 item 3).
    * When a second factor follows, the pending step is stored server-side
      (:class:`~workflow.db.models.LoginChallenge`) and its secret returned.
    """
    policy = policy or Policy.from_settings()
    typed = username.strip()
    throttle.check_login(engine, ip=ip, username=typed, limits=login_limits(policy))
    failure: WorkflowError | None = None
    with engine.unit() as session:
        found = identity.find_user(session, typed)
        user = identity.lock_user(session, found) if found is not None else None
        sealed = user is not None and seal_ok(engine.signing_key, "users", user)
        if sealed and user is not None and not user.is_system:
            lift_lapsed(session, user)  # after the seal check: it changes the row
        if user is None or user.is_system:
            spend_like_a_check(password)
            record_failure(session, None, action="login_failed", detail="unknown username",
                           policy=policy, attempted=typed[:64], ip=ip)
            failure = LoginFailed()
        elif not sealed:
            # the account row (password hash, lockout, active...) was changed outside the
            # application: refused, and a security event says why (the row is left alone)
            audit.system_event(session, at=clock.now(), actor=None, action="login_failed",
                               changes={"username": user.username, "ip": ip,
                                        "detail": "account fails its integrity check"})
            failure = TamperedData("user account", user.username)
        elif not user.active:
            spend_like_a_check(password)
            record_failure(session, user, action="login_failed", detail="deactivated account",
                           policy=policy, ip=ip)
            failure = LoginFailed()
        elif is_locked(user):
            spend_like_a_check(password)
            record_failure(session, user, action="login_failed", detail="account locked",
                           policy=policy, ip=ip)
            failure = LoginFailed()
        elif not password_matches(user.password_hash, password):
            record_failure(session, user, action="login_failed", detail="wrong password",
                           policy=policy, ip=ip)
            failure = LoginFailed()
        else:
            checked = PasswordChecked(
                user_id=user.id, username=user.username,
                needs_totp=totp_enrolled(user),
                needs_enrolment=not totp_enrolled(user) and totp_required(session, user, policy),
                must_change_password=password_expired(user, policy))
            if not checked.needs_totp:
                return checked
            secret = secrets.token_urlsafe(32)
            now = clock.now()
            session.add(LoginChallenge(
                token_hash=_token_hash(secret), user_id=user.id,
                password_version=password_version(user),
                must_change_password=checked.must_change_password, created_at=now,
                expires_at=now + timedelta(minutes=policy.login_step_minutes), ip=ip[:64]))
            return replace(checked, challenge=secret)
    raise failure


def check_login_totp(engine: Units, challenge: str, code: str, policy: Policy | None = None,
                     *, ip: str = "") -> PasswordChecked:
    """Second login step: the code, with the secret of the step :func:`check_login_password`
    opened. The step must exist, be unused and unexpired, and the account's password must
    be the one it was opened with (else :class:`LoginStepExpired`); a correct code uses it
    up. A wrong or replayed code counts toward lockout; an empty one is refused uncounted."""
    policy = policy or Policy.from_settings()
    throttle.check_login(engine, ip=ip, username=None, limits=login_limits(policy))
    failure: WorkflowError | None = None
    with engine.unit() as session:
        step = session.execute(
            select(LoginChallenge).where(LoginChallenge.token_hash == _token_hash(challenge or ""))
            .with_for_update()
        ).scalar_one_or_none()
        now = clock.now()
        if step is None or step.used_at is not None or step.expires_at <= now:
            raise LoginStepExpired()
        user = identity.lock_user(session, step.user_id)
        if user is None or not user.active or is_locked(user, now):
            step.used_at = now  # the account can no longer log in: the step is void
            failure = LoginFailed()
        elif password_version(user) != step.password_version:
            step.used_at = now
            failure = LoginStepExpired()
        else:
            try:
                kind = check_second_factor(session, user, code, engine.signing_key)
            except SecondFactorFailed as exc:
                if not (code or "").strip():
                    raise  # nothing was tried: not a wrong code, not counted
                locked = record_failure(session, user, action="login_failed",
                                        detail="wrong authentication code", policy=policy, ip=ip)
                if locked:
                    step.used_at = now
                failure = LoginFailed() if locked else exc
            else:
                step.used_at = now
                return PasswordChecked(user.id, user.username, needs_totp=False,
                                       needs_enrolment=False,
                                       must_change_password=step.must_change_password,
                                       second_factor=kind)
    raise failure


# --------------------------------------------------------------------------- sessions

#: A request writes the session row's last-seen time only when the stored one is at least
#: this old (issue #12: a page view is one read transaction, not a write). The idle timeout
#: is still computed exactly from the STORED last-seen time, so with a throttle of T the
#: stored time lags the last request by less than T: a session may end up to T sooner than
#: "idle minutes after the last request", never later (the policy's idle limit is never
#: exceeded). Login, logout, signing and security events write at once, unthrottled.
TOUCH_EVERY = timedelta(seconds=60)


def start_session(engine: Units, user_id: int, *, mfa: bool, client: str = "",
                  ip: str = "") -> str:
    """Open a server-side session after a complete login; returns the secret token.
    ``client``: the browser (user agent); ``ip``: the client's address (behind trusted
    proxies, the one they forwarded), both shown in the person's list of sessions."""
    token = secrets.token_urlsafe(32)
    with engine.unit() as session:
        user = session.get(User, user_id)
        if user is None or not user.active or is_locked(user):
            raise LoginFailed()
        now = clock.now()
        user.failed_attempts = 0
        user.lockout_count = 0  # a complete login: the next lock starts short again
        session.add(UserSession(token_hash=_token_hash(token), user_id=user.id, created_at=now,
                                last_seen_at=now, mfa_at=now if mfa else None,
                                client=client[:200], ip=ip[:64]))
        audit.system_event(session, at=now, actor=user, action="login",
                           changes={"username": user.username, "mfa": mfa, "client": client[:200],
                                    "ip": ip[:64]})
    return token


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class SessionInfo:
    id: int
    user_id: int
    username: str
    created_at: datetime
    last_seen_at: datetime
    signed_before: bool
    roles: set[str] = field(default_factory=set)


def open_session_row(session: Session, token: str) -> UserSession:
    """The session row of ``token``; SessionEnded when there is none or it was ended."""
    row = session.execute(
        select(UserSession).where(UserSession.token_hash == _token_hash(token))
    ).scalar_one_or_none()
    if row is None:
        raise SessionEnded("unknown")
    if row.ended_at is not None:
        raise SessionEnded(row.end_reason or "ended")
    return row


def live_session(session: Session, token: str, policy: Policy) -> UserSession:
    """The session row of ``token`` if it is still live; otherwise end it (idle or past its
    lifetime) and raise :class:`SessionEnded`."""
    row = open_session_row(session, token)
    now = clock.now()
    reason = expiry(row, now, policy)
    if reason:
        row.ended_at = now
        row.end_reason = reason
        session.flush()
        raise SessionEnded(reason)
    return row


def expiry(row: UserSession, now: datetime, policy: Policy) -> str | None:
    """Why a login session has ended by ``now``: ``idle`` (no request for longer than the
    idle timeout), ``lifetime`` (older than its maximum length), or None while it is live."""
    if now - row.last_seen_at > timedelta(minutes=policy.idle_minutes):
        return "idle"
    if now - row.created_at > timedelta(hours=policy.session_hours):
        return "lifetime"
    return None


@contextmanager
def _reading(engine: Units, session: Session | None) -> Iterator[Session]:
    if session is not None:
        yield session
    else:
        with engine.reader() as s:
            yield s


def current_session(engine: Units, token: str, policy: Policy | None = None, *,
                    session: Session | None = None,
                    touch_every: timedelta = TOUCH_EVERY) -> SessionInfo:
    """Validate a session on a request, writing only when needed: the session row's
    last-seen time when it is ``touch_every`` old or older (see :data:`TOUCH_EVERY`), or
    ending a session that is idle, past its lifetime or whose account is disabled (then
    :class:`SessionEnded` is raised). ``session``: the caller's read session (one per web
    request), else a read unit of its own. When a write is due, :func:`touch_session` runs
    it in its own unit and decides again there."""
    policy = policy or Policy.from_settings()
    with _reading(engine, session) as s:
        row = open_session_row(s, token)
        now = clock.now()
        user = s.get(User, row.user_id)
        if (user is not None and user.active and not is_locked(user, now)
                and expiry(row, now, policy) is None and now - row.last_seen_at < touch_every):
            return SessionInfo(row.id, user.id, user.username, row.created_at,
                               row.last_seen_at, row.first_signed_at is not None,
                               identity.roles_of(s, user))
    return touch_session(engine, token, policy)


def touch_session(engine: Units, token: str, policy: Policy | None = None) -> SessionInfo:
    """Validate a session on each request and record the activity; raises SessionEnded
    (after ending it server-side) on idle timeout or past its lifetime."""
    policy = policy or Policy.from_settings()
    ended: SessionEnded | None = None
    with engine.unit() as session:
        try:
            row = live_session(session, token, policy)
        except SessionEnded as exc:
            ended = exc
        else:
            user = session.get(User, row.user_id)
            if user is None or not user.active or is_locked(user):
                row.ended_at = clock.now()
                row.end_reason = "account disabled"
                ended = SessionEnded("account disabled")
            else:
                row.last_seen_at = clock.now()
                return SessionInfo(row.id, user.id, user.username, row.created_at,
                                   row.last_seen_at, row.first_signed_at is not None,
                                   identity.roles_of(session, user))
    raise ended


@dataclass(frozen=True)
class OpenSession:
    """One of a person's open login sessions, as their account page and the administrators'
    user page list it."""

    id: int
    created_at: datetime
    last_seen_at: datetime
    client: str  # the browser (user agent)
    ip: str
    current: bool  # the session this list is shown in


def open_sessions(session: Session, user_id: int, policy: Policy,
                  current_id: int | None = None) -> list[OpenSession]:
    """The user's sessions that are still live (not ended, not idle, not past their
    lifetime), most recently used first."""
    now = clock.now()
    rows = session.execute(
        select(UserSession).where(UserSession.user_id == user_id,
                                  UserSession.ended_at.is_(None))
        .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
    ).scalars().all()
    return [OpenSession(r.id, r.created_at, r.last_seen_at, r.client, r.ip, r.id == current_id)
            for r in rows if expiry(r, now, policy) is None]


def end_own_sessions(engine: Units, username: str, *, session_id: int | None = None,
                     current_id: int | None = None) -> int:
    """A person ends one of their own sessions (``session_id``, e.g. a forgotten browser)
    or, without it, every one of them ("Log out everywhere", the current one included).
    Another person's session is refused like one that does not exist. Audited
    (``sessions_ended``); returns how many were ended."""
    with engine.unit() as session:
        me = identity.get_user(session, username)
        if session_id is not None:
            row = session.get(UserSession, session_id)
            if row is None or row.user_id != me.id or row.ended_at is not None:
                raise WorkflowError("There is no such open session of yours.")
            return identity.end_sessions(session, me, reason="revoked", only=session_id,
                                         actor=me, why="ended by the user")
        why = "logged out everywhere" + (f" (from session #{current_id})" if current_id else "")
        return identity.end_sessions(session, me, reason="logged out everywhere", actor=me,
                                     why=why)


def end_session(engine: Units, token: str, reason: str = "logout") -> None:
    with engine.unit() as session:
        row = session.execute(
            select(UserSession).where(UserSession.token_hash == _token_hash(token))
        ).scalar_one_or_none()
        if row is None or row.ended_at is not None:
            return
        row.ended_at = clock.now()
        row.end_reason = reason
        user = session.get(User, row.user_id)
        audit.system_event(session, at=row.ended_at, actor=user, action="logout",
                           changes={"username": user.username if user else None,
                                    "reason": reason})
