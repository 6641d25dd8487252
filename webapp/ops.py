"""Operations: request ids, health and readiness, and database outages as a 503 page.

- Every request gets an id: the incoming ``X-Request-ID`` when it is well-formed (8-100
  characters of letters, digits, ``._:-``; a proxy or load balancer may set it), else a new
  one. It is on every log line of the request (workflow/logs.py), in the ``X-Request-ID``
  response header and on the error pages, so a person can quote it and an administrator
  find the lines.
- ``/healthz``: the process answers (no database). ``/readyz``: database reachable and
  writable, schema at the revision the code needs, keys loaded (workflow/health.py); 200 or
  503, JSON, no login, no secrets. Both run before any other request hook (no session, no
  database for ``/healthz``).
- A database outage (workflow/db/outage.py) answers 503 "Database unavailable" with the
  reference, not a 500 and a traceback: the outage is logged once by the engine's watch,
  and each failed request counted for the summary line logged when it recovers.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from flask import Blueprint, Flask, current_app, g, jsonify, request
from sqlalchemy import exc as sa_exc

from workflow import health, logs
from workflow.db import outage

log = logging.getLogger(__name__)
access_log = logging.getLogger("qms.access")

bp = Blueprint("ops", __name__)

HEADER = "X-Request-ID"
#: the request id in the WSGI environ, for the server's access line (qms serve)
ENVIRON_KEY = "qms.request_id"
WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,99}")
#: endpoints answered before every other hook (no session cookie read, no database)
PROBES = frozenset({"ops.healthz", "ops.readyz"})


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(given: str | None) -> str:
    """``given`` when well-formed, else a new id (a client cannot put newlines, quotes or a
    megabyte into the logs)."""
    if given and WELL_FORMED.fullmatch(given):
        return given
    return new_request_id()


def request_reference() -> str:
    """The current request's id (for pages and messages)."""
    return g.get("request_id") or ""


@bp.route("/healthz")
def healthz() -> Any:
    """The process is up (liveness): nothing else is checked."""
    return jsonify({"status": "ok"})


@bp.route("/readyz")
def readyz() -> Any:
    """Ready to serve (readiness): 200 when every critical check passes, else 503."""
    engine = current_app.config["QMS_ENGINE"]
    probe = health.Probe(engine, engine.sessions.kw["bind"], current_app.config["QMS_SETTINGS"])
    ready, checks = health.readiness(probe)
    body = {"status": "ready" if ready else "not ready",
            "checks": {c.name: c.as_json() for c in checks}}
    return jsonify(body), 200 if ready else 503


def init_app(app: Flask) -> None:
    """Register the hooks on ``app``; call it first in the factory, so that its request hook
    runs before every other one."""
    app.register_blueprint(bp)

    @app.before_request
    def _start() -> Any:
        rid = accepted_request_id(request.headers.get(HEADER))
        g.request_id = rid
        request.environ[ENVIRON_KEY] = rid
        g.request_started = time.monotonic()
        g.request_token = logs.request_id.set(rid)
        if request.endpoint in PROBES:  # answered here: no session, no user, no database
            return app.view_functions[request.endpoint]()
        return None

    @app.after_request
    def _stamp(resp: Any) -> Any:
        rid = g.get("request_id")
        if rid:
            resp.headers[HEADER] = rid
        return resp

    @app.teardown_request
    def _end(_exc: BaseException | None) -> None:
        token = g.pop("request_token", None)
        if token is not None:
            try:
                logs.request_id.reset(token)
            except ValueError:  # set in another context (a test client's preserved context)
                logs.request_id.set(None)

    @app.errorhandler(sa_exc.DBAPIError)
    def _database_error(e: sa_exc.DBAPIError) -> Any:
        from webapp import errors  # the page helpers (errors imports nothing from here)

        what = outage.kind(e)
        if what is None:  # not an outage: a bug, logged with its traceback, answered 500
            log.error("server error on %s", request.path, exc_info=e)
            return errors.server_error_page()
        state = outage.outage_of(current_app.config["QMS_ENGINE"].sessions.kw["bind"].engine)
        if state is not None:
            state.request_failed()
        message = ("The database is read-only at the moment, so nothing can be saved; "
                   "nothing was changed." if what == outage.READ_ONLY else
                   "The database cannot be reached at the moment; nothing was changed.")
        resp = errors.page_response(
            503, "Database unavailable",
            f"{message} Try again in a minute. If it lasts, tell your administrator the "
            f"reference {request_reference()}.")
        resp.headers["Retry-After"] = "30"
        return resp
