"""Logging for the processes (web workers, the scheduler, ``qms serve``): one handler on the
root logger, JSON lines by default (``QMS_LOG_FORMAT=json``), every line carrying the id of
the request it belongs to.

The request id lives in a context variable (:data:`request_id`): the web app sets it when a
request starts (webapp/ops.py) and clears it when it ends, so a line logged anywhere below,
in workflow/ too, is attributed without passing the id around. Lines outside a request carry
``"request_id": null``.

:func:`configure` installs the handler once; it leaves alone a process whose logging someone
else configured first (pytest's capture, an embedding application), unless told to replace it.
gunicorn routes its own error and access loggers to the same handler (webapp/gunicorn_conf.py).
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from workflow import config

#: the id of the request being served in this thread (None outside a request)
request_id: ContextVar[str | None] = ContextVar("qms_request_id", default=None)

HANDLER_NAME = "qms"
#: libraries whose INFO lines are kept out of the log (alembic: two lines per /readyz)
QUIET = ("alembic",)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
#: attributes a line may carry (``log.info(..., extra={...})``) that the JSON line keeps
EXTRA_FIELDS = ("method", "path", "status", "duration_ms", "client", "bytes", "user_agent",
                "kind", "failed_requests", "failed_statements", "outage_seconds", "job")


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (unless the record carries one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request id, the known
    extra fields, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "pid": record.process,
        }
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def make_handler(fmt: str = "json", stream: IO[str] | None = None) -> logging.Handler:
    """The process's log handler: ``fmt`` json or text, on ``stream`` (default stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    return handler


def installed() -> logging.Handler | None:
    """The handler :func:`configure` installed on the root logger, if any."""
    for h in logging.getLogger().handlers:
        if h.get_name() == HANDLER_NAME:
            return h
    return None


def configure(settings: config.Settings | None = None, *, replace: bool = False,
              stream: IO[str] | None = None) -> logging.Handler | None:
    """Install the handler on the root logger at the level of ``QMS_LOG_LEVEL``, unless it is
    there already or (without ``replace``) another handler was configured first; returns the
    handler in force (None: logging is someone else's)."""
    s = settings if settings is not None else config.settings()
    root = logging.getLogger()
    current = installed()
    if current is not None and not replace:
        return current
    if root.handlers and not replace:
        return None
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = make_handler(s.log_format, stream)
    root.addHandler(handler)
    root.setLevel(s.log_level.upper())
    for chatty in QUIET:  # their INFO lines are noise for an operator (one per probe)
        logging.getLogger(chatty).setLevel(max(root.level, logging.WARNING))
    return handler
