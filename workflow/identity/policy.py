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

    # the defaults are Settings' (workflow/config.py): one home for each default value
    min_length: int = config.Settings.password_min_length
    history: int = config.Settings.password_history
    max_age_days: int = config.Settings.password_max_age_days  # 0 disables expiry
    lockout_threshold: int = config.Settings.lockout_threshold
    lockout_mode: str = config.Settings.lockout_mode  # "timed" or "admin"
    lockout_base_minutes: int = config.Settings.lockout_base_minutes
    lockout_max_minutes: int = config.Settings.lockout_max_minutes
    login_rate_per_ip: int = config.Settings.login_rate_per_ip
    login_rate_per_account: int = config.Settings.login_rate_per_account
    login_rate_window_seconds: int = config.Settings.login_rate_window_seconds
    idle_minutes: int = config.Settings.session_idle_minutes
    session_hours: int = config.Settings.session_max_hours
    login_step_minutes: int = config.Settings.login_step_minutes
    totp_required_roles: tuple[str, ...] = config.Settings.totp_required_roles
    totp_issuer: str = config.Settings.totp_issuer
    security_role: str = config.Settings.security_role  # who is notified of lockouts

    @classmethod
    def from_settings(cls, settings: config.Settings | None = None) -> Policy:
        """The policy of ``settings`` (default: this process's, :func:`workflow.config.settings`)."""
        s = settings if settings is not None else config.settings()
        return cls(
            min_length=s.password_min_length,
            history=s.password_history,
            max_age_days=s.password_max_age_days,
            lockout_threshold=s.lockout_threshold,
            lockout_mode=s.lockout_mode,
            lockout_base_minutes=s.lockout_base_minutes,
            lockout_max_minutes=s.lockout_max_minutes,
            login_rate_per_ip=s.login_rate_per_ip,
            login_rate_per_account=s.login_rate_per_account,
            login_rate_window_seconds=s.login_rate_window_seconds,
            idle_minutes=s.session_idle_minutes,
            session_hours=s.session_max_hours,
            login_step_minutes=s.login_step_minutes,
            totp_required_roles=s.totp_required_roles,
            totp_issuer=s.totp_issuer,
            security_role=s.security_role,
        )
