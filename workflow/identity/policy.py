"""The security policy: password rules, lockout threshold, session limits, who needs TOTP.

Every value is set by a ``QMS_`` environment variable, read once into
:class:`workflow.config.Settings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflow import config


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
    def from_settings(cls, settings: config.Settings | None = None) -> Policy:
        """The policy of ``settings`` (default: this process's, :func:`workflow.config.settings`)."""
        s = settings if settings is not None else config.settings()
        return cls(
            min_length=s.password_min_length,
            history=s.password_history,
            max_age_days=s.password_max_age_days,
            lockout_threshold=s.lockout_threshold,
            idle_minutes=s.session_idle_minutes,
            session_hours=s.session_max_hours,
            totp_required_roles=s.totp_required_roles,
            totp_issuer=s.totp_issuer,
            security_role=s.security_role,
        )
