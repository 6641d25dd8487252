"""The person's own account: their profile (time zone, e-mail, notification preferences;
workflow/identity/profile.py has the rules), their login sessions (browser, address, last
seen), ending one of them, and "Log out everywhere" (workflow/identity/sessions.py)."""

from __future__ import annotations

from functools import cache
from typing import Any
from zoneinfo import available_timezones

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user
from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms.validators import DataRequired, Regexp

from webapp import errors
from webapp.context import engine, policy, read_session
from workflow.errors import ValidationFailed, WorkflowError
from workflow.identity import profile as profiles
from workflow.identity import sessions
from workflow.identity import users as identity

bp = Blueprint("account", __name__, url_prefix="/account")


class EndSessionForm(FlaskForm):
    session_id = HiddenField(validators=[DataRequired(), Regexp(r"^\d{1,12}$")])


class EverywhereForm(FlaskForm):
    pass


class ProfileForm(FlaskForm):
    """CSRF only: the values are read by :func:`profile_values` (one checkbox per kind and
    channel) and validated by workflow.identity.profile."""


@cache
def zones() -> tuple[str, ...]:
    """The tz database's zone names, for the time zone list."""
    return tuple(sorted(z for z in available_timezones() if "/" in z or z == "UTC"))


def profile_values() -> dict[str, Any]:
    """The profile form's values as update_profile takes them."""
    form = request.form
    return {
        "timezone": form.get("timezone", ""),
        "email": form.get("email", ""),
        "notify_mode": form.get("notify_mode", ""),
        "prefs": {kind: {ch: form.get(f"pref-{kind}-{ch}") == "1" for ch in profiles.CHANNELS}
                  for kind in profiles.CHOOSABLE},
    }


def profile_context(user: Any, problems: dict[str, str] | None = None,
                    values: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the profile form (account/_profile_form.html) shows: the stored profile, or the
    refused values with their problems."""
    p = profiles.profile(user)
    shown = {"timezone": p.timezone, "email": p.email, "notify_mode": p.notify_mode,
             "prefs": p.prefs, **(values or {})}
    return {"profile": shown, "problems": problems or {}, "zones": zones(),
            "kinds": profiles.CHOOSABLE, "mandatory": sorted(profiles.MANDATORY)}


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile_page() -> Any:
    """The person's own profile; each change is audited (``profile_changed``)."""
    form = ProfileForm()
    status = 200
    problems: dict[str, str] = {}
    values = None
    if request.method == "POST":
        if not form.validate_on_submit():
            flash("The form expired; try again.", "error")
            return redirect(url_for("account.profile_page"))
        values = profile_values()
        try:
            changed = profiles.update_profile(engine(), current_user.username,
                                              actor=current_user.username, **values)
        except ValidationFailed as exc:
            problems, status = exc.errors, 422
        except WorkflowError as exc:
            errors.flash_error(exc)
            status = errors.page_status(exc)
        else:
            flash("Your profile was saved." if changed else "Nothing changed.",
                  "success" if changed else "info")
            return redirect(url_for("account.profile_page"))
    user = identity.get_user(read_session(), current_user.username)
    return render_template("account/profile.html", form=form,
                           **profile_context(user, problems, values)), status


@bp.route("/sessions")
@login_required
def sessions_page() -> Any:
    rows = sessions.open_sessions(read_session(), current_user.id, policy(), current_user.session_id)
    return render_template(
        "account/sessions.html",
        sessions=rows,
        end=EndSessionForm(),
        everywhere=EverywhereForm(),
        idle_minutes=policy().idle_minutes,
    )


@bp.route("/sessions/end", methods=["POST"])
@login_required
def end_one() -> Any:
    form = EndSessionForm()
    if not form.validate_on_submit():
        flash("Choose a session to end.", "error")
        return redirect(url_for("account.sessions_page"))
    sid = int(form.session_id.data)
    try:
        sessions.end_own_sessions(engine(), current_user.username, session_id=sid)
    except WorkflowError as exc:
        errors.flash_error(exc)
        return redirect(url_for("account.sessions_page"))
    if sid == current_user.session_id:
        return _logged_out("You ended this session; you are logged out.")
    flash("The session was ended; whoever used it must log in again.", "success")
    return redirect(url_for("account.sessions_page"))


@bp.route("/sessions/end-all", methods=["POST"])
@login_required
def end_all() -> Any:
    if not EverywhereForm().validate_on_submit():
        flash("The form expired; try again.", "error")
        return redirect(url_for("account.sessions_page"))
    n = sessions.end_own_sessions(engine(), current_user.username, current_id=current_user.session_id)
    return _logged_out(f"You are logged out everywhere ({n} session{'s' if n != 1 else ''} ended).")


def _logged_out(message: str) -> Any:
    logout_user()
    session.clear()
    flash(message, "info")  # after clear(): the flash lives in the session
    return redirect(url_for("auth.login"))
