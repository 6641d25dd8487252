"""Due-date extensions on the record page (issue 15, R-WF-16, R-UI-7): anyone working on an
open record asks to move its due date (new date, justification); a holder of the definition's
extension roles who did not ask approves it with an electronic signature or rejects it with a
reason. The rules are the engine's (workflow/engine/extensions.py); these pages only offer
what they allow and show the engine's refusal otherwise."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import DateField, HiddenField, PasswordField, RadioField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from webapp import errors
from webapp.context import engine, read_session
from workflow.errors import RecordNotFound, StaleRecord, ValidationFailed, WorkflowError
from workflow.queries import records
from workflow.signatures.part11 import PasswordSignature

bp = Blueprint("extensions", __name__, url_prefix="/records")


class RequestForm(FlaskForm):
    expected_version = HiddenField()
    new_due = DateField("New due date", validators=[DataRequired()],
                        description="The record is then due at the end of this day (UTC).")
    reason = TextAreaField("Justification", validators=[DataRequired(), Length(max=2000)],
                           render_kw={"rows": 3},
                           description="Why the due date must move; QA decides on it.")


class DecideForm(FlaskForm):
    decision = RadioField("Decision", choices=[SelectChoice("approve", "Approve (electronic signature)"),
                                               SelectChoice("reject", "Reject (reason required)")],
                          validators=[DataRequired()])
    reason = TextAreaField("Reason", validators=[Optional(), Length(max=2000)],
                           render_kw={"rows": 2},
                           description="Required to reject; optional when approving.")
    sig_username = StringField("Username", validators=[Optional()],
                               render_kw={"autocomplete": "username"})
    sig_password = PasswordField("Password", validators=[Optional()],
                                 render_kw={"autocomplete": "current-password"})
    sig_totp = StringField("Authentication code", validators=[Optional()],
                           render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"})


def end_of_day(day: date) -> datetime:
    """A requested due date is due at the end of that day (23:59:59 UTC), so the record shows
    the date the person entered."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


@bp.route("/<number>/extensions/new", methods=["GET", "POST"])
@login_required
def request_extension(number: str) -> Any:
    page = records.record_page(read_session(), engine(), number, current_user.username)
    rec, d = page.record, page.definition
    if page.extension_refused is not None:
        abort(403, description=page.extension_refused)
    form = RequestForm(data={"expected_version": rec.version} if request.method == "GET"
                       else None)
    status = 200
    if form.validate_on_submit():
        new_due: date = form.new_due.data
        try:
            engine().request_extension(rec.number, current_user.username,
                                       end_of_day(new_due), form.reason.data.strip(),
                                       expected_version=int(form.expected_version.data))
        except (TypeError, ValueError):
            abort(400)
        except RecordNotFound:
            abort(404)
        except ValidationFailed as exc:
            form.new_due.errors = list(form.new_due.errors) + list(exc.errors.values())
            status = 422
        except WorkflowError as exc:
            status = errors.page_status(exc)
            errors.flash_error(exc)
            if isinstance(exc, StaleRecord):
                form.expected_version.data = exc.actual
        else:
            flash(f"Your extension request for {rec.number} is waiting for a decision by "
                  f"{', '.join(d.roles.get(r, r) for r in d.extension_roles)}.", "success")
            return redirect(url_for("records.view", number=rec.number))
    elif request.method == "POST":
        status = 422
    return render_template("records/extension_request.html", rec=rec, d=d, form=form), status


@bp.route("/<number>/extensions/<int:ext_id>", methods=["GET", "POST"])
@login_required
def decide_extension(number: str, ext_id: int) -> Any:
    page = records.record_page(read_session(), engine(), number, current_user.username)
    rec, d = page.record, page.definition
    ext = next((e for e in page.extensions if e.id == ext_id), None)
    if ext is None:
        abort(404)
    refused = page.extension_decide.get(ext_id, f"Extension request #{ext_id} was already "
                                                 f"{ext.status}.")
    if refused is not None:
        abort(403, description=refused)
    form = DecideForm(data={"sig_username": current_user.username}
                      if request.method == "GET" else None)
    status = 200
    if form.validate_on_submit():
        approve = form.decision.data == "approve"
        reason = (form.reason.data or "").strip() or None
        sig = None
        if approve:
            sig = PasswordSignature(form.sig_username.data or "", form.sig_password.data or "",
                                    (form.sig_totp.data or "").strip() or None,
                                    session_token=session.get("token"))
        try:
            engine().decide_extension(ext_id, current_user.username, approve, signature=sig,
                                      reason=reason)
        except WorkflowError as exc:
            status = errors.page_status(exc)
            errors.flash_error(exc)
        else:
            flash(f"The due date of {rec.number} is now {ext.new_due:%Y-%m-%d} (approved)."
                  if approve else f"The extension request for {rec.number} was rejected.",
                  "success")
            return redirect(url_for("records.view", number=rec.number))
    elif request.method == "POST":
        status = 422
    form.sig_password.data = ""  # never echo a password back
    return render_template("records/extension_decide.html", rec=rec, d=d, ext=ext, form=form,
                           needs_totp=not current_user.signed_before), status
