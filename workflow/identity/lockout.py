"""Lockout: N consecutive failures (login *or* signing) lock the account until an
administrator unlocks it; every failure, lock and unlock is a security event in the system
audit chain (R-P11-300d-1/2). Failures are recorded in their own transaction, after the
refused business change has rolled back.

:func:`record_failure` takes a ``session`` and only flushes; :func:`unlock` runs its own unit.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from workflow import clock, outbox
from workflow.audit import trail as audit
from workflow.db.models import User
from workflow.db.uow import Units
from workflow.errors import WorkflowError
from workflow.identity import users as identity
from workflow.identity.policy import Policy


def record_failure(session: Session, user: User | None, *, action: str, detail: str,
                   policy: Policy, attempted: str = "", ip: str = "") -> bool:
    """Count one failed attempt; lock at the threshold. Returns True when this locked it.
    ``user`` must have been read with its row locked (:func:`identity.lock_user`), so the
    count of parallel failures is exact. ``ip``: the client's address, where known."""
    now = clock.now()
    changes = {"username": user.username if user else attempted, "detail": detail,
               "failed_attempts": (user.failed_attempts + 1) if user else None}
    if ip:
        changes["ip"] = ip[:64]
    audit.system_event(session, at=now, actor=user, action=action, changes=changes)
    if user is None:
        return False
    user.failed_attempts += 1
    if user.locked_at is None and policy.lockout_threshold and \
            user.failed_attempts >= policy.lockout_threshold:
        user.locked_at = now
        audit.system_event(session, at=now, actor=user, action="account_locked",
                           changes={"username": user.username,
                                    "failed_attempts": user.failed_attempts})
        outbox.enqueue(session, at=now, recipient_role=policy.security_role,
                       subject=f"account {user.username} locked",
                       body=f"{user.full_name} ({user.username}) was locked after "
                            f"{user.failed_attempts} failed attempts ({detail}).",
                       kind="account_locked")
        return True
    return False


def unlock(engine: Units, username: str, *, actor: str, reason: str) -> None:
    if not reason.strip():
        raise WorkflowError("A reason is required to unlock an account.")
    with engine.unit() as session:
        user = identity.get_user(session, username, active=False)
        admin = identity.get_user(session, actor)
        if user.locked_at is None and user.failed_attempts == 0:
            raise WorkflowError(f"{user.username} is not locked.")
        user.locked_at = None
        user.failed_attempts = 0
        audit.system_event(session, at=clock.now(), actor=admin, action="account_unlocked",
                           changes={"username": user.username}, reason=reason)
