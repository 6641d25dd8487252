"""Administration: users, roles and grants, unlock, deactivate, reset authenticator.

Every action needs a reason and is audited in the system chain (by workflow.identity and
workflow.auth); administrators never see or choose a user's password.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, time, timedelta
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from workflow.db.models import RoleGrant, User
from workflow.errors import WorkflowError
from workflow.identity import lockout, passwords, totp
from workflow.identity import users as identity

from .auth_views import roles_required
from .forms import choices
from .helpers import engine, policy

bp = Blueprint("admin", __name__, url_prefix="/admin")
ROLE_RE = r"^[a-z][a-z0-9_]{0,39}$"


class CreateUserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    full_name = StringField("Printed full name", validators=[DataRequired(), Length(max=200)],
                            description="Shown on every signature this person gives.")
    email = StringField("E-mail", validators=[Optional(), Length(max=254),
                                             Regexp(r"^[^@\s]+@[^@\s]+$", message="Not an e-mail address.")])
    timezone = StringField("Time zone", default="UTC", validators=[DataRequired()])
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


def _system_roles() -> list[str]:
    from workflow.db.models import DefinitionVersion

    roles: set[str] = {"admin"}
    with engine().reader() as s:
        for key in s.execute(select(DefinitionVersion.key).distinct()).scalars():
            roles |= set(engine().registry.latest(s, key).definition.roles)
    return sorted(roles)


@bp.route("/users")
@roles_required("admin")
def users() -> Any:
    with engine().reader() as s:
        rows = s.execute(select(User).where(User.is_system.is_(False)).order_by(User.username)
                         ).scalars().all()
        roles = {u.id: sorted(identity.roles_of(s, u)) for u in rows}
    return render_template("admin/users.html", users=rows, roles=roles, form=CreateUserForm())


@bp.route("/users/new", methods=["POST"])
@roles_required("admin")
def create_user() -> Any:
    form = CreateUserForm()
    if not form.validate_on_submit():
        flash("Please fill in username, printed name, time zone and a reason.", "error")
        return redirect(url_for("admin.users"))
    temp = f"Tmp-{secrets.token_urlsafe(12)}"
    try:
        with engine().unit() as s:
            admin = identity.get_user(s, current_user.username)
            u = identity.create_user(s, form.username.data, form.full_name.data,
                                     email=form.email.data or "", timezone=form.timezone.data,
                                     actor=admin, reason=form.reason.data)
            passwords.set_password(s, u, temp, actor=admin, policy=policy(), reason=form.reason.data,
                                   temporary=True)
    except WorkflowError as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.users"))
    flash(f"{form.username.data} was created. Temporary password (shown once; they must "
          f"change it at first login): {temp}", "success")
    return redirect(url_for("admin.user", username=form.username.data.strip().lower()))


@bp.route("/users/<username>", methods=["GET"])
@roles_required("admin")
def user(username: str) -> Any:
    with engine().reader() as s:
        u = identity.find_user(s, username)
        if u is None or u.is_system:
            abort(404)
        grants = s.execute(select(RoleGrant).where(RoleGrant.user_id == u.id)
                           .order_by(RoleGrant.granted_at.desc())).scalars().all()
        active_roles = identity.roles_of(s, u)
    return render_template("admin/user.html", u=u, grants=grants, active_roles=active_roles,
                           grant_form=GrantForm(), action_form=ReasonForm(),
                           system_roles=_system_roles())


@bp.route("/users/<username>/grant", methods=["POST"])
@roles_required("admin")
def grant(username: str) -> Any:
    form = GrantForm()
    if not form.validate_on_submit():
        flash("A valid role name and a reason are required.", "error")
        return redirect(url_for("admin.user", username=username))
    expires_at = None
    if form.expires.data:
        try:
            day = datetime.strptime(form.expires.data, "%Y-%m-%d").date()
        except ValueError:
            flash("The expiry must be a date.", "error")
            return redirect(url_for("admin.user", username=username))
        expires_at = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
    try:
        with engine().unit() as s:
            identity.grant_role(s, identity.get_user(s, username), form.role.data,
                                actor=identity.get_user(s, current_user.username),
                                reason=form.reason.data, expires_at=expires_at)
    except WorkflowError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Granted {form.role.data} to {username}.", "success")
    return redirect(url_for("admin.user", username=username))


@bp.route("/users/<username>/action", methods=["POST"])
@roles_required("admin")
def action(username: str) -> Any:
    form = ReasonForm()
    if not form.validate_on_submit():
        flash("A reason is required.", "error")
        return redirect(url_for("admin.user", username=username))
    me = current_user.username
    try:
        if form.action.data == "unlock":
            lockout.unlock(engine(), username, actor=me, reason=form.reason.data)
            flash(f"{username} is unlocked.", "success")
        elif form.action.data == "reset_totp":
            totp.reset_totp(engine(), username, actor=me, reason=form.reason.data)
            flash(f"{username}'s authenticator was reset; they enrol again at next login.",
                  "success")
        elif form.action.data == "deactivate":
            if username == me:
                raise WorkflowError("You cannot deactivate your own account.")
            with engine().unit() as s:
                identity.deactivate_user(s, identity.get_user(s, username, active=False),
                                         actor=identity.get_user(s, me), reason=form.reason.data)
            flash(f"{username} is deactivated. Their past signatures stay valid.", "success")
        elif form.action.data == "reset_password":
            temp = f"Tmp-{secrets.token_urlsafe(12)}"
            with engine().unit() as s:
                passwords.set_password(s, identity.get_user(s, username), temp,
                                       actor=identity.get_user(s, me), policy=policy(),
                                       reason=form.reason.data, temporary=True)
            flash(f"Temporary password for {username} (shown once): {temp}", "success")
        elif form.action.data == "revoke":
            with engine().unit() as s:
                n = identity.revoke_role(s, identity.get_user(s, username, active=False),
                                         form.role.data or "", actor=identity.get_user(s, me),
                                         reason=form.reason.data)
            if not n:
                raise WorkflowError(f"{username} does not hold the role {form.role.data!r}.")
            flash(f"Revoked {form.role.data} from {username}.", "success")
    except WorkflowError as exc:
        flash(str(exc), "error")
    return redirect(url_for("admin.user", username=username) if request.form else
                    url_for("admin.users"))
