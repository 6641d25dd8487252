"""Controlled documents (issue 19): the documents list and the Read view of a document's
effective version, with its watermark; printed, the page says "Uncontrolled when printed"
with the print time (static/print.css, static/print_time.js). Reads through
workflow/queries/document_read.py, which applies the one visibility rule."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template
from flask_login import current_user, login_required

from webapp.context import engine, read_session
from workflow import clock
from workflow.errors import RecordNotFound
from workflow.identity import users as identity
from workflow.queries import document_read

bp = Blueprint("documents", __name__, url_prefix="/documents")


@bp.route("/")
@login_required
def index() -> Any:
    s = read_session()
    user = identity.get_user(s, current_user.username)
    rows = document_read.document_index(s, engine().registry, user, identity.roles_of(s, user))
    return render_template("documents/index.html", rows=rows, today=clock.now().date())


@bp.route("/<number>")
@login_required
def read(number: str) -> Any:
    """The effective version of document ``number``: 404 when none is in force or the viewer
    may not see it (no probing)."""
    try:
        view = document_read.read_view(read_session(), engine(), number.strip()[:80],
                                       current_user.username)
    except RecordNotFound:
        abort(404)
    return render_template("documents/read.html", v=view, uncontrolled=document_read.UNCONTROLLED,
                           printed_at=clock.now())
