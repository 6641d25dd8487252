"""The e-signature policy page (21 CFR 11.10(j), 11.100(b); issue 14, item 6): the person
reads the policy in full and accepts it by signing with their own password (and
authenticator code where they have one). The rules are workflow.identity.enablement's."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from webapp import errors
from webapp.context import engine, policy, read_session
from workflow.errors import AccountLocked, WorkflowError
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.identity.totp import totp_enrolled

bp = Blueprint("esign", __name__, url_prefix="/account/esignature")


@bp.route("/", methods=["GET", "POST"])
@login_required
def policy_page() -> Any:
    s = read_session()
    me = identity.get_user(s, current_user.username)
    esign = enablement.current_policy()
    status = 200
    if request.method == "POST":
        if request.form.get("agree") != "yes":
            flash("Tick the statement to accept the policy.", "error")
            status = 422
        else:
            try:
                enablement.accept_policy(engine(), current_user.username,
                                         password=request.form.get("password") or "",
                                         code=request.form.get("code") or None,
                                         version=request.form.get("version") or "",
                                         policy=policy())
            except AccountLocked as exc:
                errors.flash_error(exc)
                return redirect(url_for("auth.login"))
            except WorkflowError as exc:
                errors.flash_error(exc)
                status = 422
            else:
                flash(f"You accepted the e-signature policy (version {esign.version}).",
                      "success")
                return redirect(url_for("esign.policy_page"))
        s = read_session()
        me = identity.get_user(s, current_user.username)
    return render_template("account/esignature.html", esign=esign,
                           statement=enablement.STATEMENT, status=enablement.status(s, me, esign),
                           needs_code=totp_enrolled(me)), status
