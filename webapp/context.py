"""Per-request context: the engine and policy the app was built with, the viewer's time zone,
safe redirect targets, and printed names for usernames."""

from __future__ import annotations

from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app
from flask_login import current_user
from sqlalchemy import select

from workflow.db.models import User
from workflow.engine.core import Engine
from workflow.identity.policy import Policy


def engine() -> Engine:
    return current_app.config["QMS_ENGINE"]


def policy() -> Policy:
    return current_app.config["QMS_POLICY"]


def user_zone() -> ZoneInfo:
    tz = getattr(current_user, "timezone", None) or "UTC"
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def safe_next(target: str | None, default: str) -> str:
    """Only same-site paths: no scheme, host, backslash or control character."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def people_names(usernames: set[str]) -> dict[str, str]:
    """username -> printed name, in one query."""
    if not usernames:
        return {}
    with engine().reader() as s:
        return {u: n for u, n in s.execute(
            select(User.username, User.full_name).where(User.username.in_(sorted(usernames))))}
