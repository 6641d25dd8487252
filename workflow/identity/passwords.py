"""Passwords: argon2id (argon2-cffi); policy: minimum length, not containing the username,
not among 20,000 common passwords, no reuse of the last N, expiry (R-P11-300b-1).

Functions taking a ``session`` only flush; those taking an ``engine`` run their own unit.
"""

from __future__ import annotations

import gzip
import secrets
from datetime import timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import clock
from workflow.audit import trail as audit
from workflow.db.models import PasswordHistory, User
from workflow.db.uow import Units
from workflow.errors import LoginFailed, PasswordRejected, WorkflowError
from workflow.identity import tokens as api_tokens
from workflow.identity import users as identity
from workflow.identity.lockout import is_locked, lift_lapsed, locked_error, record_failure
from workflow.identity.policy import Policy
from workflow.resources import data_file

#: the longest password accepted, when set and at login (longer ones are refused before any
#: hashing: an attacker cannot make the server hash megabytes; R-SEC-34)
MAX_LENGTH = 256
#: fewer distinct characters than this is "trivially repetitive" (aaaa..., abab..., 1212...)
MIN_DISTINCT = 5
COMMON_PASSWORDS = data_file("common-passwords.txt.gz")
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


def use_fast_hashing_for_tests() -> None:
    """Cheaper argon2 parameters (tests only: hundreds of hashes per run). Verification reads
    the parameters from each stored hash, so both kinds verify."""
    global _hasher
    _hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@cache
def _common_passwords() -> frozenset[str]:
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as fh:
        return frozenset(line.strip().lower() for line in fh if line.strip())


def hash_password(password: str) -> str:
    return _hasher.hash(password)


_dummy: dict[int, str] = {}


def spend_like_a_check(password: str) -> None:
    """Verify ``password`` against a hash no password matches, with the current parameters:
    a login for an unknown, deactivated or locked account takes as long as a real password
    check, so the answer's timing does not tell whether the account exists (issue 14)."""
    key = id(_hasher)
    if key not in _dummy:
        _dummy.clear()
        _dummy[key] = _hasher.hash(secrets.token_urlsafe(24))
    password_matches(_dummy[key], password)


def password_matches(stored: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` hashes. One over :data:`MAX_LENGTH`
    characters, or with a NUL, never matches and is not hashed (no password can be set so)."""
    if not stored or not usable(password):
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def usable(password: str) -> bool:
    """A password that can be checked at all: at most :data:`MAX_LENGTH` characters, no NUL."""
    return len(password) <= MAX_LENGTH and "\x00" not in password


def repetitive(password: str) -> bool:
    """Trivially repetitive: fewer than :data:`MIN_DISTINCT` distinct characters, one short
    unit repeated (``abcabcabcabc``), or a run with one step (``abcdefghijkl``,
    ``987654321098``-like runs of one step between neighbours)."""
    if len(set(password)) < MIN_DISTINCT:
        return True
    n = len(password)
    if any(n % k == 0 and password == password[:k] * (n // k) for k in range(1, n // 2 + 1)):
        return True
    steps = {ord(b) - ord(a) for a, b in zip(password, password[1:], strict=False)}
    return len(steps) == 1 and steps <= {-1, 1}


def policy_problems(session: Session, user: User, password: str, policy: Policy) -> list[str]:
    problems = []
    if len(password) < policy.min_length:
        problems.append(f"it must have at least {policy.min_length} characters")
    if len(password) > MAX_LENGTH:
        problems.append(f"it must have at most {MAX_LENGTH} characters")
    if "\x00" in password:
        problems.append("it must not contain a NUL character")
    elif password and repetitive(password):
        problems.append("it is trivially repetitive (one character or a short pattern "
                        "repeated, or a run like abcdef...)")
    if user.username.lower() in password.lower():
        problems.append("it must not contain your username")
    if password.lower() in _common_passwords() or password.strip().lower() in _common_passwords():
        problems.append("it is one of the most commonly used passwords")
    if policy.history and password_matches(user.password_hash, password):
        problems.append(f"it must differ from your last {policy.history} passwords")
    elif policy.history:
        old = session.execute(
            select(PasswordHistory.password_hash).where(PasswordHistory.user_id == user.id)
            .order_by(PasswordHistory.id.desc()).limit(policy.history - 1)  # + the current one
        ).scalars()
        if any(password_matches(h, password) for h in old):
            problems.append(f"it must differ from your last {policy.history} passwords")
    return problems


def set_password(session: Session, user: User, password: str, *, actor: User, policy: Policy,
                 reason: str = "", temporary: bool = False, keep_session: int | None = None
                 ) -> None:
    """Set a password after checking the policy. An administrator's ``temporary`` password
    must be changed at next login (R-P11-200-4). Audited; the password itself never is.

    It ends access gained with the old one (issue 14 item 1): every open session of the
    user ends (the person's own change keeps ``keep_session``, the one they changed it
    in), and after an administrator's reset the user's API tokens are suspended until the
    user confirms them (:func:`workflow.identity.tokens.suspend_tokens`)."""
    problems = policy_problems(session, user, password, policy)
    if problems:
        raise PasswordRejected(problems)
    # the account row first, then the audit chain's head (system_event): the order every
    # credential check takes, so a reset racing a login cannot deadlock on PostgreSQL
    identity.lock_user(session, user)
    now = clock.now()
    if user.password_hash:
        session.add(PasswordHistory(user_id=user.id, password_hash=user.password_hash, set_at=now))
    user.password_hash = hash_password(password)
    user.password_changed_at = now
    user.must_change_password = temporary
    audit.system_event(session, at=now, actor=actor,
                       action="password_reset" if actor.id != user.id else "password_changed",
                       changes={"username": user.username, "must_change_password": temporary},
                       reason=reason or None)
    if actor.id == user.id:
        identity.end_sessions(session, user, reason="password changed", keep=keep_session,
                              actor=actor, why="the user changed their password")
    else:
        identity.end_sessions(session, user, reason="password reset", actor=actor,
                              why=reason or None)
        api_tokens.suspend_tokens(session, user, actor=actor,
                                  reason="password reset by an administrator")


def password_expired(user: User, policy: Policy) -> bool:
    if user.must_change_password:
        return True
    if not policy.max_age_days or user.password_changed_at is None:
        return False
    return clock.now() - user.password_changed_at > timedelta(days=policy.max_age_days)


def change_password(engine: Units, username: str, old: str, new: str,
                    policy: Policy | None = None, *, keep_session: int | None = None) -> None:
    """The user changes their own password (also the forced change after expiry). Their
    other sessions end; ``keep_session`` (the session it is done in) stays open."""
    policy = policy or Policy.from_settings()
    failure: WorkflowError | None = None
    with engine.unit() as session:
        user = identity.lock_user(session, identity.get_user(session, username))
        assert user is not None  # found just now; rows are never deleted
        lift_lapsed(session, user)
        if is_locked(user):
            raise locked_error(user)
        if not password_matches(user.password_hash, old):
            locked = record_failure(session, user, action="password_change_failed",
                                    detail="wrong current password", policy=policy)
            failure = locked_error(user) if locked else LoginFailed()
        else:
            set_password(session, user, new, actor=user, policy=policy,
                         reason="changed by the user", keep_session=keep_session)
            return
    raise failure
