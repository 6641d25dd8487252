"""The security policy: password rules, lockout threshold, session limits, who needs TOTP.

Every value can be set by a ``QMS_`` environment variable, read when a policy is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {raw!r}") from None


@dataclass(frozen=True)
class Policy:
    """Security policy; every value can be set by a ``QMS_`` environment variable."""

    min_length: int = 12
    history: int = 5
    max_age_days: int = 90  # 0 disables expiry
    lockout_threshold: int = 5
    idle_minutes: int = 15
    session_hours: int = 12
    totp_required_roles: tuple[str, ...] = ("qa", "admin")
    totp_issuer: str = "QMS"
    security_role: str = "admin"  # who is notified of lockouts

    @classmethod
    def from_env(cls) -> Policy:
        roles = os.environ.get("QMS_TOTP_REQUIRED_ROLES")
        return cls(
            min_length=_env_int("QMS_PASSWORD_MIN_LENGTH", 12),
            history=_env_int("QMS_PASSWORD_HISTORY", 5),
            max_age_days=_env_int("QMS_PASSWORD_MAX_AGE_DAYS", 90),
            lockout_threshold=_env_int("QMS_LOCKOUT_THRESHOLD", 5),
            idle_minutes=_env_int("QMS_SESSION_IDLE_MINUTES", 15),
            session_hours=_env_int("QMS_SESSION_MAX_HOURS", 12),
            totp_required_roles=tuple(r.strip() for r in roles.split(",") if r.strip())
            if roles is not None else ("qa", "admin"),
            totp_issuer=os.environ.get("QMS_TOTP_ISSUER", "QMS"),
            security_role=os.environ.get("QMS_SECURITY_ROLE", "admin"),
        )
