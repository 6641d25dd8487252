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
from typing import Any

from flask import Flask, request
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from workflow import config as qms_config
from workflow import logs as qms_logs

csrf = CSRFProtect()
#: the session cookie's name; over HTTPS (``QMS_COOKIE_SECURE=1``) the ``__Host-`` one
COOKIE_NAME = "qms_session"
SECURE_COOKIE_NAME = "__Host-qms_session"


def _secret_key(settings: qms_config.Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    instance = settings.instance_dir
    path = instance / "flask-secret.key"
    if not path.exists():
        # several workers may start at once (gunicorn -w 4): each writes a whole key to a
        # file of its own and links it into place; the first link wins, the others read it
        # (an O_EXCL create let a worker fail to boot, or read the file before it was written)
        instance.mkdir(parents=True, exist_ok=True)
        tmp = instance / f".flask-secret.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def create_app(config: dict[str, Any] | None = None,
               settings: qms_config.Settings | None = None) -> Flask:
    """Build the app. ``config`` may carry ``QMS_ENGINE`` (an Engine, for tests) and
    ``QMS_POLICY`` (a workflow.identity.policy.Policy); otherwise both are built from
    ``settings`` (default: the process's, read from the ``QMS_`` environment variables)."""
    settings = settings if settings is not None else qms_config.settings()
    app = Flask(__name__, instance_path=str(settings.instance_dir.resolve()))
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        # over HTTPS the __Host- prefix makes browsers refuse the cookie unless it is Secure,
        # for this host only (no Domain) and for every path: no sibling or subdomain can
        # plant or overwrite it
        SESSION_COOKIE_NAME=SECURE_COOKIE_NAME if settings.cookie_secure else COOKIE_NAME,
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_DOMAIN=None,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        QMS_PAGE_SIZE=25,
    )
    if config:
        app.config.update(config)
    from webapp import ops

    ops.init_app(app)  # first: request ids and the health probes before every other hook
    if settings.trusted_proxies:
        # believe the X-Forwarded-For/-Proto/-Host/-Port of exactly this many proxies: the
        # client address recorded in login and security events is then the real one, and
        # url_for builds https:// links; with 0 the headers are ignored (a client could
        # otherwise forge its address)
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n,  # type: ignore[method-assign]
                                x_port=n)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(settings)
    # Imported here, not at the top: the ``qms`` console script (webapp/cli.py) imports this
    # package, and loading the views and the engine with it made every command start slower
    # (measured: `import webapp.cli` 0.95 s -> 1.7 s).
    from webapp import api, context, errors, filters, params
    from webapp.views import (
        account,
        admin,
        api_tokens,
        audit,
        auth,
        dashboard,
        definitions,
        documents,
        drafts,
        esign,
        extensions,
        inbox,
        notifications,
        records,
        risks,
        search,
        training,
    )
    from workflow.bootstrap import open_engine
    from workflow.identity.policy import Policy

    if "QMS_ENGINE" not in app.config:
        app.config["QMS_ENGINE"], _ = open_engine(settings=settings)
    # the application's log lines need a handler also under gunicorn (which configures only
    # its own loggers): installed unless the process configured logging itself
    if qms_logs.configure(settings) is not None:
        from flask.logging import default_handler

        app.logger.removeHandler(default_handler)  # its lines go to the one handler
    logging.getLogger(__name__).info(
        "web app ready: database %s, time zone %s, %d trusted proxies",
        app.config["QMS_ENGINE"].sessions.kw["bind"].engine.url.render_as_string(
            hide_password=True), settings.timezone, settings.trusted_proxies)
    app.config.setdefault("QMS_POLICY", Policy.from_settings(settings))
    # the settings in force (workflow/config.py): views read them here, never the environment
    app.config["QMS_SETTINGS"] = settings
    app.config.setdefault("QMS_API_RATE_PER_MINUTE", settings.api_rate_per_minute)

    csrf.init_app(app)
    context.init_app(app)  # the request's one read session, closed in teardown
    auth.init_app(app)
    for module in (auth, inbox, records, audit, admin, api_tokens, notifications, dashboard,
                   definitions, account, esign, extensions, search, drafts, documents,
                   risks, training):
        app.register_blueprint(module.bp)
    api.init_app(app, csrf)  # /api/v1: bearer tokens only, exempt from CSRF (no cookies)
    filters.register(app)
    errors.register(app, wants_json=api.is_api_request)  # JSON errors under /api/v1
    params.init_app(app, wants_json=api.is_api_request)  # unusable query parameters: 400

    hsts = settings.cookie_secure

    @app.after_request
    def _security_headers(resp: Any) -> Any:
        if hsts:
            # served over HTTPS (secure cookies): browsers use only HTTPS for a year
            resp.headers.setdefault("Strict-Transport-Security",
                                    "max-age=31536000; includeSubDomains")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'")
        if request.endpoint != "static":
            # pages, the API and error pages (also a 404 that matched no endpoint) are never
            # stored by browsers or proxies: a shared computer's back button or a proxy
            # cache must not show another person's records
            resp.headers["Cache-Control"] = "no-store"
            resp.headers.setdefault("Pragma", "no-cache")
        return resp

    return app
