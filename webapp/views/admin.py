"""Administration: users, roles and grants, unlock, deactivate, reset authenticator.

Every action needs a reason and is audited in the system chain; the commands and their rules
are workflow.identity.admin's (shared with ``qms users``). Administrators never see or choose a
user's password.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from webapp import errors
from webapp.context import engine, policy, read_session
from webapp.forms import choices
from webapp.views import account
from webapp.views.auth import roles_required
from workflow.errors import NotAuthorized, ValidationFailed, WorkflowError
from workflow.identity import admin as accounts
from workflow.identity import enablement, sessions
from workflow.identity import grants as role_grants
from workflow.identity import profile as profiles
from workflow.identity import users as identity
from workflow.identity.admin import ADMIN_ROLE
from workflow.queries import directories

bp = Blueprint("admin", __name__, url_prefix="/admin")
ROLE_RE = r"^[a-z][a-z0-9_]{0,39}$"


class CreateUserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    full_name = StringField("Printed full name", validators=[DataRequired(), Length(max=200)],
                            description="Shown on every signature this person gives.")
    email = StringField("E-mail", validators=[Optional(), Length(max=254),
                                             Regexp(r"^[^@\s]+@[^@\s]+$", message="Not an e-mail address.")])
    timezone = StringField("Time zone", validators=[DataRequired()],
                           description="tz database name, e.g. Europe/Paris.")
    reason = StringField("Reason", validators=[DataRequired(), Length(max=500)])


class GrantForm(FlaskForm):
    role = StringField("Role", validators=[DataRequired(), Regexp(ROLE_RE)])
    expires = StringField("Expires (optional)", render_kw={"type": "date"},
                          validators=[Optional()])
    reason = StringField("Reason", validators=[DataRequired(), Length(max=500)])


class ReasonForm(FlaskForm):
    action = SelectField(choices=choices([("unlock", "Unlock"), ("deactivate", "Deactivate"),
                                          ("reset_totp", "Reset authenticator"),
                                          ("reset_password", "Issue temporary password"),
                                          ("revoke", "Revoke role")], blank=False))
    role = StringField(validators=[Optional(), Regexp(ROLE_RE)])
    reason = StringField("Reason", validators=[DataRequired(), Length(max=500)])


def _catalogue() -> role_grants.RoleCatalogue:
    """The roles an administrator may grant (declared by definitions and settings)."""
    return role_grants.catalogue(read_session())


@bp.route("/users")
@roles_required(ADMIN_ROLE)
def users() -> Any:
    s = read_session()
    rows = directories.accounts(s)
    roles = {u.id: sorted(identity.roles_of(s, u)) for u in rows}
    form = CreateUserForm(timezone=current_app.config["QMS_SETTINGS"].timezone)
    return render_template("admin/users.html", users=rows, roles=roles, form=form)


@bp.route("/users/new", methods=["POST"])
@roles_required(ADMIN_ROLE)
def create_user() -> Any:
    form = CreateUserForm()
    if not form.validate_on_submit():
        flash("Please fill in username, printed name, time zone and a reason.", "error")
        return redirect(url_for("admin.users"))
    try:
        created = accounts.create_user(engine(), form.username.data, form.full_name.data,
                                       email=form.email.data or "", timezone=form.timezone.data,
                                       actor=current_user.username, reason=form.reason.data,
                                       policy=policy())
    except WorkflowError as exc:
        errors.flash_error(exc)
        return redirect(url_for("admin.users"))
    flash(f"{form.username.data} was created. Temporary password (shown once; they must "
          f"change it at first login): {created.password}", "success")
    return redirect(url_for("admin.user", username=created.username))


@bp.route("/users/<username>", methods=["GET"])
@roles_required(ADMIN_ROLE)
def user(username: str) -> Any:
    s = read_session()
    u = identity.find_user(s, username)
    if u is None or u.is_system:
        abort(404)
    grants = directories.grants_of(s, u)
    active_roles = identity.roles_of(s, u)
    return render_template("admin/user.html", u=u, grants=grants, active_roles=active_roles,
                           grant_form=GrantForm(), action_form=ReasonForm(),
                           catalogue=_catalogue(),
                           pending=role_grants.pending_requests(s, u), decide_form=DecideForm(),
                           signing=enablement.status(s, u),
                           open_sessions=sessions.open_sessions(s, u.id, policy()),
                           end_form=EndSessionsForm(), profile_form=ProfileReasonForm(),
                           **account.profile_context(u))


class ProfileReasonForm(FlaskForm):
    reason = StringField("Reason", id="profile_reason",
                         validators=[DataRequired(), Length(max=500)])


@bp.route("/users/<username>/profile", methods=["POST"])
@roles_required(ADMIN_ROLE)
def profile(username: str) -> Any:
    """Change a user's time zone, e-mail and notification preferences after creation,
    through the same command as their own profile page (audited, with the reason)."""
    form = ProfileReasonForm()
    if not form.validate_on_submit():
        flash("A reason is required to change someone's profile.", "error")
        return redirect(url_for("admin.user", username=username))
    try:
        # the department (area) is the administrator's to set: the not_in_area separation
        # rule reads it (nobody audits their own area)
        area = request.form.get("department")
        changed = profiles.update_profile(engine(), username, actor=current_user.username,
                                          reason=form.reason.data, department=area,
                                          **account.profile_values())
    except ValidationFailed as exc:
        for name, problem in exc.errors.items():
            flash(f"{name.replace('_', ' ').capitalize()} {problem}; nothing was changed.",
                  "error")
    except WorkflowError as exc:
        errors.flash_error(exc)
    else:
        flash(f"Profile of {username} saved: {', '.join(changed)} changed." if changed
              else "Nothing changed.", "success" if changed else "info")
    return redirect(url_for("admin.user", username=username))


class EndSessionsForm(FlaskForm):
    session_id = StringField(validators=[Optional(), Regexp(r"^\d{1,12}$")])
    reason = StringField("Reason", id="end_reason",
                         validators=[DataRequired(), Length(max=500)])


@bp.route("/users/<username>/sessions/end", methods=["POST"])
@roles_required(ADMIN_ROLE)
def end_sessions(username: str) -> Any:
    """End one session of a user (``session_id``) or all of them; audited with the reason."""
    form = EndSessionsForm()
    if not form.validate_on_submit():
        flash("A reason is required to end someone's sessions.", "error")
        return redirect(url_for("admin.user", username=username))
    sid = int(form.session_id.data) if form.session_id.data else None
    try:
        n = accounts.end_sessions_of(engine(), username, actor=current_user.username,
                                     reason=form.reason.data, session_id=sid)
    except WorkflowError as exc:
        errors.flash_error(exc)
    else:
        flash(f"Ended {n} session{'s' if n != 1 else ''} of {username}; they must log in "
              "again.", "success")
    return redirect(url_for("admin.user", username=username))


@bp.route("/users/<username>/grant", methods=["POST"])
@roles_required(ADMIN_ROLE)
def grant(username: str) -> Any:
    form = GrantForm()
    if not form.validate_on_submit():
        flash("A valid role name and a reason are required.", "error")
        return redirect(url_for("admin.user", username=username))
    day = None
    if form.expires.data:
        try:
            day = datetime.strptime(form.expires.data, "%Y-%m-%d").date()
        except ValueError:
            flash("The expiry must be a date.", "error")
            return redirect(url_for("admin.user", username=username))
    try:
        pending = accounts.grant_role(engine(), username, form.role.data,
                                      actor=current_user.username, reason=form.reason.data,
                                      expires_on=day)
    except WorkflowError as exc:
        errors.flash_error(exc)
    else:
        if pending is None:
            flash(f"Granted {form.role.data} to {username}.", "success")
        else:
            flash(f"{form.role.data} is a privileged role: grant request #{pending} now awaits "
                  "a second administrator's approval (Privileged accounts page).", "info")
    return redirect(url_for("admin.user", username=username))


class DecideForm(FlaskForm):
    reason = StringField("Reason", validators=[DataRequired(), Length(max=500)])


@bp.route("/grants/<int:request_id>/<any(approve, reject):decision>", methods=["POST"])
@roles_required(ADMIN_ROLE)
def decide(request_id: int, decision: str) -> Any:
    """A second administrator approves or rejects a pending grant of a privileged role."""
    form = DecideForm()
    back = request.form.get("back") or ""
    target = (url_for("admin.user", username=back) if back
              else url_for("admin.privileged"))
    if not form.validate_on_submit():
        flash("A reason is required.", "error")
        return redirect(target)
    command = accounts.approve_grant if decision == "approve" else accounts.reject_grant
    try:
        what = command(engine(), request_id, actor=current_user.username,
                       reason=form.reason.data)
    except NotAuthorized as exc:
        abort(403, description=str(exc))
    except WorkflowError as exc:
        errors.flash_error(exc)
    else:
        flash(f"Grant request #{request_id} ({what}) was "
              f"{'approved: the role is granted' if decision == 'approve' else 'rejected'}.",
              "success")
    return redirect(target)


@bp.route("/users/<username>/verify-identity", methods=["POST"])
@roles_required(ADMIN_ROLE)
def verify_identity(username: str) -> Any:
    """Record that ``username``'s identity was verified, and how (21 CFR 11.100(b))."""
    try:
        enablement.record_identity_verified(engine(), username, actor=current_user.username,
                                            method=request.form.get("method") or "",
                                            reason=request.form.get("reason") or "")
    except NotAuthorized as exc:
        abort(403, description=str(exc))
    except WorkflowError as exc:
        errors.flash_error(exc)
    else:
        flash(f"{username}'s identity verification was recorded.", "success")
    return redirect(url_for("admin.user", username=username))


@bp.route("/privileged")
@roles_required(ADMIN_ROLE)
def privileged() -> Any:
    """The access review: privileged accounts, rule violations, pending grants, dormant
    accounts."""
    return render_template("admin/privileged.html", review=accounts.access_review(engine()),
                           form=DecideForm())


@bp.route("/users/<username>/action", methods=["POST"])
@roles_required(ADMIN_ROLE)
def action(username: str) -> Any:
    form = ReasonForm()
    if not form.validate_on_submit():
        flash("A reason is required.", "error")
        return redirect(url_for("admin.user", username=username))
    me = current_user.username
    try:
        if form.action.data == "unlock":
            accounts.unlock(engine(), username, actor=me, reason=form.reason.data)
            flash(f"{username} is unlocked.", "success")
        elif form.action.data == "reset_totp":
            accounts.reset_totp(engine(), username, actor=me, reason=form.reason.data)
            flash(f"{username}'s authenticator was reset; they enrol again at next login.",
                  "success")
        elif form.action.data == "deactivate":
            accounts.deactivate_user(engine(), username, actor=me, reason=form.reason.data)
            flash(f"{username} is deactivated. Their past signatures stay valid.", "success")
        elif form.action.data == "reset_password":
            temp = accounts.issue_temporary_password(engine(), username, actor=me,
                                                     reason=form.reason.data, policy=policy())
            flash(f"Temporary password for {username} (shown once): {temp}", "success")
        elif form.action.data == "revoke":
            accounts.revoke_role(engine(), username, form.role.data or "", actor=me,
                                 reason=form.reason.data)
            flash(f"Revoked {form.role.data} from {username}.", "success")
    except WorkflowError as exc:
        errors.flash_error(exc)
    return redirect(url_for("admin.user", username=username) if request.form else
                    url_for("admin.users"))
