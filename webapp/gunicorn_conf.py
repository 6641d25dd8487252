"""gunicorn settings for the web UI (docs/operations.md, README *Production*):

    gunicorn -c python:webapp.gunicorn_conf

(from a checkout, ``gunicorn`` alone reads ./gunicorn.conf.py, which imports this). Any
setting may still be given on the command line (``-b``, ``-w``...), which wins.

- the app: ``webapp:create_app()``, its settings from the ``QMS_`` variables (and .env);
- workers: ``WEB_CONCURRENCY`` or 2 per CPU + 1 (at most 8), sync workers, ``--preload`` off
  so each worker opens its own database connections;
- logging: gunicorn's error and access loggers and the application's all write through the
  one handler of workflow/logs.py (JSON lines with the request id, ``QMS_LOG_FORMAT``); an
  access line carries method, path, status, duration, bytes, the client address and the
  request id of the ``X-Request-ID`` header the app set;
- the client address: behind ``QMS_TRUSTED_PROXIES`` proxies the app's ProxyFix takes it from
  ``X-Forwarded-For`` (the access line shows that one, not the proxy's).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from gunicorn.glogging import Logger

from workflow import config as _config
from workflow import logs as _logs

_settings = _config.settings()  # (gunicorn reads every module name: none may be 'config')

wsgi_app = "webapp:create_app()"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or min(2 * (os.cpu_count() or 1) + 1, 8))
worker_class = "sync"
timeout = 60
graceful_timeout = 30
# gunicorn trusts X-Forwarded-Proto only from these; the app's ProxyFix does the rest
forwarded_allow_ips = "127.0.0.1,::1"
accesslog = None  # the access lines go through the JSON handler (logconfig_dict below)
loglevel = _settings.log_level

logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": _settings.log_level.upper(), "handlers": ["qms"]},
    "loggers": {
        "gunicorn.error": {"level": _settings.log_level.upper(), "handlers": [],
                           "propagate": True},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        "alembic": {"level": "WARNING"},
    },
    "handlers": {"qms": {"()": "workflow.logs.make_handler", "fmt": _settings.log_format}},
    "formatters": {},
}


class AccessLogger(Logger):
    """gunicorn's logger with structured access lines: the fields the JSON line carries as
    members, the request id taken from the response's X-Request-ID header."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        rid = next((v for k, v in (resp.headers or []) if k.lower() == "x-request-id"), None)
        status = getattr(resp, "status_code", None) or str(resp.status).split(" ", 1)[0]
        duration_ms = round(request_time.total_seconds() * 1000, 1)
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING")
        self.access_log.info(
            "%s %s %s %.1f ms", environ.get("REQUEST_METHOD"), path, status, duration_ms,
            extra={"method": environ.get("REQUEST_METHOD"),
                   "path": f"{path}?{query}" if query else path,
                   "status": int(status), "duration_ms": duration_ms,
                   "bytes": getattr(resp, "sent", None),
                   # after the app ran: ProxyFix put the forwarded client address here
                   "client": environ.get("REMOTE_ADDR"),
                   "user_agent": environ.get("HTTP_USER_AGENT"),
                   "request_id": rid})


logger_class = AccessLogger


def post_worker_init(worker: Any) -> None:
    """Each worker: make sure the root logger carries the one handler (dictConfig did it in
    the arbiter; a worker inherits it)."""
    if _logs.installed() is None:
        _logs.configure(_settings, replace=True)
    logging.getLogger(__name__).debug("worker %s ready", worker.pid)
