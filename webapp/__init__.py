"""The web UI: a Flask app factory, one blueprint per area, server-rendered pages.

Every change a page makes goes through the workflow engine (``workflow.engine.Engine``);
views never commit. CSRF protection covers every POST (Flask-WTF). No asset comes from a
CDN: the product runs on closed networks.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, g, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect

from workflow import errors as wf_errors

log = logging.getLogger(__name__)
csrf = CSRFProtect()


def _secret_key(instance: Path) -> str:
    env = os.environ.get("QMS_SECRET_KEY")
    if env:
        return env
    path = instance / "flask-secret.key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` may carry ``QMS_ENGINE`` (an Engine, for tests) and
    ``QMS_POLICY`` (a workflow.identity.policy.Policy); otherwise both come from the environment."""
    from workflow.db.engines import REPO_ROOT
    from workflow.identity.policy import Policy

    instance = Path(os.environ.get("QMS_INSTANCE_DIR", REPO_ROOT / "instance"))
    app = Flask(__name__, instance_path=str(instance.resolve()))
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("QMS_COOKIE_SECURE", "0") == "1",
        SESSION_COOKIE_NAME="qms_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        QMS_PAGE_SIZE=25,
    )
    if config:
        app.config.update(config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(instance)
    if "QMS_ENGINE" not in app.config:
        from workflow.bootstrap import open_engine

        app.config["QMS_ENGINE"], _ = open_engine()
    app.config.setdefault("QMS_POLICY", Policy.from_env())

    csrf.init_app(app)
    from . import (
        admin,
        api,
        api_tokens_page,
        audit_views,
        auth_views,
        dashboard,
        definitions_editor,
        inbox,
        notifications_views,
        records,
    )

    auth_views.init_app(app)
    for module in (auth_views, inbox, records, audit_views, admin, api_tokens_page,
                   notifications_views, dashboard, definitions_editor):
        app.register_blueprint(module.bp)
    api.init_app(app, csrf)  # /api/v1: bearer tokens only, exempt from CSRF (no cookies)

    from .helpers import register_template_helpers

    register_template_helpers(app)
    _register_errors(app)

    @app.after_request
    def _security_headers(resp: Any) -> Any:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'")
        if request.endpoint and request.endpoint != "static":
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    return app


def _register_errors(app: Flask) -> None:
    def page(status: int, title: str, message: str) -> Any:
        from . import api

        if api.is_api_request():  # JSON errors under /api/v1
            return api.error_page(status, message)
        return render_template("error.html", status=status, title=title, message=message), status

    @app.errorhandler(CSRFError)
    def _csrf(e: CSRFError) -> tuple[str, int]:
        return page(400, "Form expired", "The form was missing its security token or it "
                    "expired. Go back, reload the page and submit again. Nothing was changed.")

    @app.errorhandler(400)
    def _bad_request(e: Any) -> tuple[str, int]:
        return page(400, "Bad request", "The request was not understood. Nothing was changed.")

    @app.errorhandler(405)
    def _method(e: Any) -> tuple[str, int]:
        return page(405, "Not allowed here", "This address does not accept that kind of "
                    "request. Nothing was changed.")

    @app.errorhandler(404)
    def _not_found(e: Any) -> tuple[str, int]:
        return page(404, "Not found", "This page or record does not exist, or you do not "
                    "have access to it.")

    @app.errorhandler(403)
    def _forbidden(e: Any) -> tuple[str, int]:
        return page(403, "Not allowed", getattr(e, "description", None) or
                    "You do not have the role this page needs.")

    @app.errorhandler(wf_errors.RecordNotFound)
    def _record_not_found(e: wf_errors.RecordNotFound) -> tuple[str, int]:
        return page(404, "Not found", str(e))

    @app.errorhandler(500)
    def _server_error(e: Any) -> tuple[str, int]:
        log.exception("server error on %s", request.path)
        ref = getattr(g, "request_id", "")
        return page(500, "Something went wrong", "The request failed and nothing was "
                    f"changed. If it happens again, tell your administrator {ref}.")
