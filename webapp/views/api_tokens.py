"""The user's own API tokens: create (the secret is shown once) and revoke. CSRF-protected
forms with the session login, like every other page; the tokens themselves are used only at
/api/v1 (workflow/identity/tokens.py has the rules)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from webapp import errors
from webapp.context import engine, read_session
from webapp.forms import choices
from workflow.errors import WorkflowError
from workflow.identity import tokens as api_tokens
from workflow.identity import users as identity

bp = Blueprint("tokens", __name__, url_prefix="/account/tokens")


class CreateTokenForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)],
                       description="What the token is for, e.g. 'Reporting script'.")
    scopes = SelectMultipleField(
        "Scopes", choices=choices([("read", "read: look at records, tasks, definitions"),
                                   ("write", "write: create records and take steps"),
                                   ("sign", "sign: take signed steps (your password is still "
                                            "needed each time)")], blank=False),
        default=["read"], option_widget=CheckboxInput(), widget=ListWidget(prefix_label=False))
    expires = SelectField("Expires after", choices=choices([
        ("30", "30 days"), ("90", "90 days"), ("180", "180 days"), ("366", "1 year")],
        blank=False), default="90")


class RevokeForm(FlaskForm):
    token_id = HiddenField(validators=[DataRequired()])


def _tokens() -> list[api_tokens.TokenInfo]:
    s = read_session()
    return api_tokens.list_tokens(s, identity.get_user(s, current_user.username))


@bp.route("/", methods=["GET", "POST"])
@login_required
def index() -> Any:
    form = CreateTokenForm()
    created = None
    status = 200
    if form.validate_on_submit():
        try:
            created = api_tokens.create_own_token(engine(), current_user.username,
                                                  name=form.name.data, scopes=form.scopes.data,
                                                  expires_in_days=int(form.expires.data))
        except WorkflowError as exc:
            errors.flash_error(exc)
            status = 422
    elif form.is_submitted():
        status = 422
    return render_template("account/tokens.html", form=form, created=created,
                           tokens=_tokens(), revoke=RevokeForm(), confirm=RevokeForm()), status


@bp.route("/revoke", methods=["POST"])
@login_required
def revoke() -> Any:
    form = RevokeForm()
    if form.validate_on_submit():
        try:
            prefix = api_tokens.revoke_own(engine(), current_user.username,
                                           str(form.token_id.data))
        except WorkflowError as exc:
            errors.flash_error(exc)
        else:
            flash(f"Token {prefix} is revoked; it stops working at once.", "success")
    return redirect(url_for("tokens.index"))


@bp.route("/confirm", methods=["POST"])
@login_required
def confirm() -> Any:
    """The owner confirms a token suspended by an administrator's reset: it works again."""
    form = RevokeForm()
    if form.validate_on_submit():
        try:
            prefix = api_tokens.confirm_own(engine(), current_user.username,
                                            str(form.token_id.data))
        except WorkflowError as exc:
            errors.flash_error(exc)
        else:
            flash(f"Token {prefix} is confirmed; it works again.", "success")
    return redirect(url_for("tokens.index"))
