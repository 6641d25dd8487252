"""The person's own login sessions: where they are logged in (browser, address, last seen),
ending one of them, and "Log out everywhere" (workflow/identity/sessions.py has the rules)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, session, url_for
from flask_login import current_user, login_required, logout_user
from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms.validators import DataRequired, Regexp

from webapp import errors
from webapp.context import engine, policy, read_session
from workflow.errors import WorkflowError
from workflow.identity import sessions

bp = Blueprint("account", __name__, url_prefix="/account")


class EndSessionForm(FlaskForm):
    session_id = HiddenField(validators=[DataRequired(), Regexp(r"^\d{1,12}$")])


class EverywhereForm(FlaskForm):
    pass


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
