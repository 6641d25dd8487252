"""Login (password, then TOTP), TOTP enrolment, password change, logout, idle timeout.

The Flask session cookie holds only the server-side session token; the session row in the
database is the truth (idle timeout, lifetime, logout all end it there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import wraps
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from webapp import errors
from webapp.context import engine, keep_read_session, policy, read_session, safe_next
from webapp.qr import qr_svg
from workflow import clock
from workflow import config as qms_config
from workflow.errors import (
    AccountLocked,
    LoginFailed,
    LoginStepExpired,
    LoginThrottled,
    SecondFactorFailed,
    SessionEnded,
    TamperedData,
    WorkflowError,
)
from workflow.identity import passwords, sessions
from workflow.identity import totp as second_factor
from workflow.queries import directories

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to continue."
login_manager.login_message_category = "info"
login_manager.session_protection = None  # the server-side session row is the protection

#: endpoints reachable while a password change is pending (a temporary password is known to
#: the administrator who set it, so nothing else - not even enrolling an authenticator)
_PASSWORD_PENDING_OK = {"auth.logout", "auth.change_password", "static"}
#: endpoints reachable while an authenticator enrolment is pending
_ENROL_PENDING_OK = _PASSWORD_PENDING_OK | {"auth.enrol"}


@dataclass
class CurrentUser:
    """What Flask-Login knows about the logged-in person, refreshed on every request."""

    id: int
    username: str
    full_name: str
    timezone: str
    roles: set[str] = field(default_factory=set)
    signed_before: bool = False
    session_id: int | None = None  # the login session row of this request
    #: the session's stored last-seen time: the idle timeout counts from it
    last_seen_at: datetime | None = None
    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False

    def get_id(self) -> str:
        return str(self.id)

    def has(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    app.jinja_env.globals.update(
        session_idle_seconds=idle_seconds_left,
        session_warn_seconds=lambda: qms_config.settings().session_warn_seconds,
        draft_autosave_seconds=lambda: qms_config.settings().draft_autosave_seconds)

    @login_manager.request_loader
    def _load(_req: Any) -> CurrentUser | None:
        token = session.get("token")
        if not token:
            return None
        try:
            # reads through the request's session; writes only when the throttled
            # last-seen refresh is due or the session ends (workflow/identity/sessions.py)
            # saving a draft is not activity: an open form that autosaves must not keep a
            # session alive that nobody uses (the warning's "Stay signed in" does)
            every = NOT_ACTIVITY_TOUCH if request.endpoint in NOT_ACTIVITY \
                else sessions.TOUCH_EVERY
            with keep_read_session():
                info = sessions.current_session(engine(), token, policy(),
                                                session=read_session(), touch_every=every)
        except SessionEnded as exc:
            session.clear()
            g.session_ended = exc.message
            return None
        u = directories.person(read_session(), info.user_id)
        return CurrentUser(u.id, u.username, u.full_name, u.timezone, info.roles,
                           info.signed_before, info.id, info.last_seen_at)

    @login_manager.unauthorized_handler
    def _unauthorized() -> Any:
        message = g.get("session_ended") or "Please log in to continue."
        if request.endpoint in NOT_ACTIVITY or request.endpoint == "auth.keepalive":
            # the page's scripts: an answer they understand, not the login page; the page
            # then reloads, and that request shows why the session ended
            if g.get("session_ended"):
                session["ended_because"] = g.session_ended
            return jsonify({"ended": True, "message": message}), 401
        message = session.pop("ended_because", None) or message
        flash(message, "info")
        return redirect(url_for("auth.login", next=request.full_path if request.method == "GET"
                                else None))

    @app.before_request
    def _pending_steps() -> Any:
        if not current_user.is_authenticated:
            return None
        if session.get("must_change_password") and request.endpoint not in _PASSWORD_PENDING_OK:
            return redirect(url_for("auth.change_password"))
        if session.get("must_enrol") and request.endpoint not in _ENROL_PENDING_OK:
            return redirect(url_for("auth.enrol"))
        return None


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)],
                           render_kw={"autocomplete": "username", "autofocus": True})
    password = PasswordField("Password",
                             validators=[DataRequired(), Length(max=passwords.MAX_LENGTH)],
                             render_kw={"autocomplete": "current-password"})


class CodeForm(FlaskForm):
    code = StringField("Authentication code", validators=[DataRequired(), Length(max=20)],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "numeric",
                                  "autofocus": True})


class ChangePasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()],
                            render_kw={"autocomplete": "current-password"})
    new = PasswordField("New password", validators=[DataRequired()],
                        render_kw={"autocomplete": "new-password"})
    confirm = PasswordField("Repeat the new password", validators=[DataRequired()],
                            render_kw={"autocomplete": "new-password"})


def _safe_next(target: str | None) -> str:
    return safe_next(target, url_for("inbox.index"))


def client_ip() -> str:
    """The client's address: the connecting one, or the one the trusted proxies forwarded
    (``QMS_TRUSTED_PROXIES``, applied by ProxyFix in create_app)."""
    return (request.remote_addr or "")[:64]


def _begin_session(user_id: int, mfa: bool, checked: sessions.PasswordChecked) -> Any:
    token = sessions.start_session(engine(), user_id, mfa=mfa,
                                   client=(request.user_agent.string or "")[:200],
                                   ip=client_ip())
    nxt = session.get("next")
    session.clear()  # a new session id at login (no fixation)
    session["token"] = token
    session.permanent = True
    if checked.must_change_password:
        session["must_change_password"] = True
    if checked.needs_enrolment:
        session["must_enrol"] = True
    u = directories.person(read_session(), user_id)
    login_user(CurrentUser(u.id, u.username, u.full_name, u.timezone))
    return redirect(_safe_next(nxt))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("inbox.index"))
    form = LoginForm()
    if request.method == "GET" and request.args.get("next"):
        session["next"] = request.args["next"]
    if form.validate_on_submit():
        try:
            checked = sessions.check_login_password(engine(), form.username.data,
                                                    form.password.data, policy(),
                                                    ip=client_ip())
        except LoginThrottled as exc:
            return _throttled(exc, "auth/login.html", form)
        except (LoginFailed, AccountLocked, TamperedData) as exc:
            errors.flash_error(exc)
            return render_template("auth/login.html", form=form), 401
        if checked.challenge:
            # only the secret of the server-side step: the step itself (whose account, until
            # when, used or not, for which password) lives in the database
            session["pending"] = {"challenge": checked.challenge}
            return redirect(url_for("auth.totp"))
        return _begin_session(checked.user_id, False, checked)
    return render_template("auth/login.html", form=form)


def _throttled(exc: LoginThrottled, template: str, form: Any) -> Any:
    """429 with Retry-After: too many attempts from this address or for this username."""
    errors.flash_error(exc)
    resp = make_response(render_template(template, form=form), 429)
    resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


@bp.route("/login/code", methods=["GET", "POST"])
def totp() -> Any:
    pending = session.get("pending")
    challenge = pending.get("challenge") if isinstance(pending, dict) else None
    if not challenge:
        session.pop("pending", None)
        return redirect(url_for("auth.login"))
    form = CodeForm()
    if request.method == "POST" and not (request.form.get("code") or "").strip():
        # an empty field is no attempt: asked again, not counted as a wrong code
        form.validate_on_submit()  # CSRF and the field's "required" message
        return render_template("auth/totp.html", form=form), 422
    if form.validate_on_submit():
        try:
            checked = sessions.check_login_totp(engine(), challenge, form.code.data, policy(),
                                                ip=client_ip())
        except LoginThrottled as exc:
            return _throttled(exc, "auth/totp.html", form)
        except (SecondFactorFailed, AccountLocked, LoginFailed, LoginStepExpired) as exc:
            errors.flash_error(exc)
            if not isinstance(exc, SecondFactorFailed):
                session.pop("pending", None)
                return redirect(url_for("auth.login"))
            return render_template("auth/totp.html", form=form), 401
        session.pop("pending", None)
        return _begin_session(checked.user_id, True, checked)
    return render_template("auth/totp.html", form=form)


@bp.route("/account/authenticator", methods=["GET", "POST"])
@login_required
def enrol() -> Any:
    form = CodeForm()
    # the pending secret lives encrypted in the database only, never in the cookie
    enrolment = None if request.method == "GET" else \
        second_factor.pending_enrolment(engine(), current_user.username, policy())
    if enrolment is None:
        try:
            enrolment = second_factor.begin_totp_enrolment(engine(), current_user.username, policy())
        except WorkflowError as exc:
            return render_template("auth/enrol.html", form=None, enrolled=True, message=str(exc))
    if form.validate_on_submit():
        try:
            codes = second_factor.confirm_totp_enrolment(engine(), current_user.username,
                                                         form.code.data)
        except SecondFactorFailed as exc:
            errors.flash_error(exc)
        else:
            session.pop("must_enrol", None)
            return render_template("auth/recovery_codes.html", codes=codes)
    return render_template("auth/enrol.html", form=form, secret=enrolment.secret,
                           qr=Markup(qr_svg(enrolment.uri)),  # noqa: S704 - SVG we generated
                           required=session.get("must_enrol"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password() -> Any:
    form = ChangePasswordForm()
    if form.validate_on_submit():
        if form.new.data != form.confirm.data:
            flash("The two new passwords differ.", "error")
        else:
            try:
                # the person's other sessions end; this one stays open
                passwords.change_password(engine(), current_user.username, form.current.data,
                                          form.new.data, policy(),
                                          keep_session=current_user.session_id)
            except AccountLocked as exc:
                return _end("locked", str(exc), "error")
            except WorkflowError as exc:
                errors.flash_error(exc)
            else:
                session.pop("must_change_password", None)
                flash("Your password was changed.", "success")
                return redirect(url_for("inbox.index"))
    return render_template("auth/change_password.html", form=form,
                           forced=session.get("must_change_password"), policy=policy())


def _end(reason: str, message: str, category: str = "info") -> Any:
    token = session.get("token")
    if token:
        sessions.end_session(engine(), token, reason)
    logout_user()
    session.clear()
    flash(message, category)  # after clear(): the flash lives in the session
    return redirect(url_for("auth.login"))


#: endpoints whose requests do not count as activity for the idle timeout
NOT_ACTIVITY = frozenset({"drafts.save", "auth.session_status"})
NOT_ACTIVITY_TOUCH = timedelta(days=3650)


def idle_seconds_left() -> int:
    """Seconds until this request's login session times out for inactivity, counted from
    the stored last-seen time (the server's own rule, workflow/identity/sessions.py)."""
    if not current_user.is_authenticated or current_user.last_seen_at is None:
        return 0
    idle = timedelta(minutes=policy().idle_minutes)
    left = idle - (clock.now() - clock.as_utc(current_user.last_seen_at))
    return max(0, int(left.total_seconds()))


@bp.route("/session/keepalive", methods=["POST"])
@login_required
def keepalive() -> Any:
    """"Stay signed in": record activity now and answer how long the session lasts. CSRF is
    checked (the X-CSRFToken header). A session that already ended answers 401."""
    try:
        info = sessions.touch_session(engine(), session["token"], policy())
    except SessionEnded as exc:
        session.clear()
        return jsonify({"ended": True, "message": exc.message}), 401
    left = timedelta(minutes=policy().idle_minutes) - (clock.now() - info.last_seen_at)
    return jsonify({"ended": False, "idle_seconds": max(0, int(left.total_seconds()))})


@bp.route("/session/status")
@login_required
def session_status() -> Any:
    """How long the session lasts without activity (this request is not activity): the
    warning asks before it shows, since another tab may have kept the session alive."""
    return jsonify({"idle_seconds": idle_seconds_left()})


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Any:
    return _end("logout", "You are logged out.")


def roles_required(*roles: str) -> Any:
    """Decorator: 403 unless the user holds one of ``roles`` (checked server-side)."""
    def deco(fn: Any) -> Any:
        @wraps(fn)
        @login_required
        def wrapper(*a: Any, **kw: Any) -> Any:
            if not current_user.has(*roles):
                abort(403, description=f"This page needs one of the roles: {', '.join(roles)}.")
            return fn(*a, **kw)

        return wrapper

    return deco

