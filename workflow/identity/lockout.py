"""Lockout: N consecutive failures (login *or* signing) lock the account; every failure, lock
and unlock is a security event in the system audit chain (R-P11-300d-1/2). Failures are
recorded in their own transaction, after the refused business change has rolled back.

How a lock ends is the policy's ``lockout_mode`` (``QMS_LOCKOUT_MODE``, issue 14 item 4):

* ``timed`` (default): the lock ends by itself after ``lockout_base_minutes``, twice as long
  for each further lock without a successful login in between (at most
  ``lockout_max_minutes``), so a stranger typing wrong passwords cannot shut a person out
  for good, the last administrator included. An administrator may unlock earlier.
* ``admin``: only an administrator unlocks (for companies whose SOP requires it).

A lapsed timed lock is lifted, with an ``account_unlocked`` event, by the next login attempt
(:func:`lift_lapsed`); until then :func:`is_locked` already treats it as ended.

Failures for usernames that do not exist write no event each: one per client address and
window, then one at the 10th, 100th, 1000th... each carrying the count so far.

:func:`record_failure` takes a ``session`` and only flushes; :func:`unlock` runs its own unit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from workflow import clock, outbox
from workflow.audit import trail as audit
from workflow.db.models import User
from workflow.db.uow import Units
from workflow.errors import AccountLocked, WorkflowError
from workflow.identity import throttle
from workflow.identity import users as identity
from workflow.identity.policy import Policy


def is_locked(user: User, now: datetime | None = None) -> bool:
    """Whether the account is locked now (a timed lock that has run out is not)."""
    if user.locked_at is None:
        return False
    return user.locked_until is None or (now or clock.now()) < user.locked_until


def locked_error(user: User) -> AccountLocked:
    """The error telling the account's owner that it is locked, and until when."""
    return AccountLocked(user.username, user.locked_until)


def attempts_left(user: User, policy: Policy) -> int | None:
    """Failed attempts the account may still make before it locks (None: no lockout)."""
    if not policy.lockout_threshold:
        return None
    return max(0, policy.lockout_threshold - user.failed_attempts)


def lock_minutes(user: User, policy: Policy) -> int:
    """The length of the next timed lock: the base, doubled per earlier consecutive lock."""
    doubling = min(user.lockout_count, 20)  # 2**20 minutes is past any sensible maximum
    return min(policy.lockout_base_minutes * 2**doubling, policy.lockout_max_minutes)


def lift_lapsed(session: Session, user: User, now: datetime | None = None) -> bool:
    """Lift a timed lock whose time is over (audited ``account_unlocked`` by the system);
    the failure count starts again, the lock count stays (the next lock lasts longer).
    ``user`` read with its row locked. Returns whether a lock was lifted."""
    now = now or clock.now()
    if user.locked_at is None or user.locked_until is None or now < user.locked_until:
        return False
    audit.system_event(
        session,
        at=now,
        actor=None,
        action="account_unlocked",
        changes={"username": user.username, "locked_until": user.locked_until},
        reason="the lockout period ended",
    )
    user.locked_at = None
    user.locked_until = None
    user.failed_attempts = 0
    return True


def record_failure(
    session: Session,
    user: User | None,
    *,
    action: str,
    detail: str,
    policy: Policy,
    attempted: str = "",
    ip: str = "",
) -> bool:
    """Count one failed attempt; lock at the threshold. Returns True when this locked it.
    ``user`` must have been read with its row locked (:func:`identity.lock_user`), so the
    count of parallel failures is exact. ``ip``: the client's address, where known."""
    now = clock.now()
    if user is None:
        _unknown_user(
            session, action=action, detail=detail, attempted=attempted, ip=ip, policy=policy, now=now
        )
        return False
    # a timed lock that ran out (not lifted yet, e.g. the signing that lifted it rolled
    # back) must not keep the account from locking again
    lift_lapsed(session, user, now)
    changes: dict[str, object] = {
        "username": user.username,
        "detail": detail,
        "failed_attempts": user.failed_attempts + 1,
    }
    if ip:
        changes["ip"] = ip[:64]
    audit.system_event(session, at=now, actor=user, action=action, changes=changes)
    user.failed_attempts += 1
    if (
        user.locked_at is None
        and policy.lockout_threshold
        and user.failed_attempts >= policy.lockout_threshold
    ):
        user.locked_at = now
        until = None
        if policy.lockout_mode == "timed":
            until = now + timedelta(minutes=lock_minutes(user, policy))
        user.locked_until = until
        user.lockout_count += 1
        audit.system_event(
            session,
            at=now,
            actor=user,
            action="account_locked",
            changes={
                "username": user.username,
                "failed_attempts": user.failed_attempts,
                "locked_until": until,
                "lockout_count": user.lockout_count,
            },
        )
        ends = (
            f"It unlocks by itself at {until:%Y-%m-%d %H:%M} UTC."
            if until
            else "An administrator must unlock it."
        )
        outbox.enqueue(
            session,
            at=now,
            recipient_role=policy.security_role,
            subject=f"account {user.username} locked",
            body=f"{user.full_name} ({user.username}) was locked after "
            f"{user.failed_attempts} failed attempts ({detail}). {ends}",
            kind="account_locked",
        )
        return True
    return False


def _unknown_user(
    session: Session, *, action: str, detail: str, attempted: str, ip: str, policy: Policy, now: datetime
) -> None:
    """A failure for a username that does not exist: counted per client address and
    window; an event is written for the 1st, 10th, 100th... only (a flood of guesses does
    not flood the trail)."""
    seconds = policy.login_rate_window_seconds or 300
    n = throttle.count(session, f"unknown-user:{ip[:64]}", now, seconds)
    if not throttle.worth_recording(n):
        return
    changes: dict[str, object] = {
        "username": attempted,
        "detail": detail,
        "failed_attempts": None,
        "failures_in_window": n,
        "window_started": throttle.window_start(now, seconds),
    }
    if ip:
        changes["ip"] = ip[:64]
    audit.system_event(session, at=now, actor=None, action=action, changes=changes)


def unlock(engine: Units, username: str, *, actor: str, reason: str) -> None:
    if not reason.strip():
        raise WorkflowError("A reason is required to unlock an account.")
    with engine.unit() as session:
        user = identity.get_user(session, username, active=False)
        admin = identity.get_user(session, actor)
        identity.lock_user(session, user)  # row before chain head, as a login does
        if user.locked_at is None and user.failed_attempts == 0:
            raise WorkflowError(f"{user.username} is not locked.")
        user.locked_at = None
        user.locked_until = None
        user.failed_attempts = 0
        user.lockout_count = 0
        audit.system_event(
            session,
            at=clock.now(),
            actor=admin,
            action="account_unlocked",
            changes={"username": user.username},
            reason=reason,
        )
