"""Per-request context: the engine and policy the app was built with, the request's one read
session, the viewer's time zone, safe redirect targets, and printed names for usernames."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, current_app, g, has_request_context
from flask_login import current_user
from sqlalchemy import event
from sqlalchemy.orm import Session

from workflow.db.uow import KEY
from workflow.engine.core import Engine
from workflow.identity.policy import Policy
from workflow.queries import directories


def engine() -> Engine:
    return current_app.config["QMS_ENGINE"]


def policy() -> Policy:
    return current_app.config["QMS_POLICY"]


def read_session() -> Session:
    """The request's one read session (issue #12: one read transaction per request).

    Opened on first use (a request that reads nothing opens none) and kept on ``flask.g``;
    :func:`close_read_session` ends it in teardown. It never writes: every change goes
    through a command, which opens its own write unit. A read after a command committed in
    the same request gets a new session (see :func:`_after_commit`): an open snapshot would
    not show the change (SQLite WAL), nor would rows already in its identity map.
    """
    s = g.get("qms_read")
    if s is not None and g.pop("qms_read_stale", False):
        close_read_session()
        s = None
    if s is None:
        cm = engine().reader()
        s = cm.__enter__()
        g.qms_read_cm = cm
        g.qms_read = s
    return s


def close_read_session(exc: BaseException | None = None) -> None:
    """End the request's read session, if one was opened (teardown_request).

    It leaves the way every ``reader()`` unit does: nothing was written, so ending it
    writes nothing. Left normally, not rolled back: the test engine nests every unit as a
    SAVEPOINT on one connection, where rolling back the outer read would undo the
    request's own (already committed) write units.
    """
    cm: AbstractContextManager[Session] | None = g.pop("qms_read_cm", None)
    g.pop("qms_read", None)
    if cm is None:
        return
    if exc is None:
        cm.__exit__(None, None, None)
    else:
        cm.__exit__(type(exc), exc, exc.__traceback__)


@contextmanager
def keep_read_session() -> Iterator[None]:
    """Writes inside this block leave the request's read session as it is: for a write
    the rest of the request never reads back (the session row's last-seen refresh)."""
    g.qms_keep_read = True
    try:
        yield
    finally:
        g.pop("qms_keep_read", None)


def _after_commit(session: Session) -> None:
    """After a write unit commits during a request, the next read starts a new snapshot."""
    if (session.info.get(KEY) and has_request_context() and "qms_read" in g
            and not g.get("qms_keep_read")):
        g.qms_read_stale = True


def init_app(app: Flask) -> None:
    app.teardown_request(close_read_session)
    sessions = app.config["QMS_ENGINE"].sessions
    if not event.contains(sessions, "after_commit", _after_commit):
        event.listen(sessions, "after_commit", _after_commit)


def user_zone() -> ZoneInfo:
    tz = getattr(current_user, "timezone", None) or current_app.config["QMS_SETTINGS"].timezone
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
    """username -> printed name, in one query (through the request's read session)."""
    return directories.people_names(read_session(), usernames)
