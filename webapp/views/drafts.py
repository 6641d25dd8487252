"""Drafts of unsubmitted forms (workflow/form_drafts.py): the page's script saves what the
person typed every few seconds and just before the idle timeout; the form restores it when it
is opened again; submitting deletes it. Saving a draft does not count as activity for the idle
timeout (webapp/views/auth.py NOT_ACTIVITY)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, request, url_for
from flask_login import current_user, login_required
from werkzeug.datastructures import MultiDict

from webapp.context import engine, read_session, safe_next
from workflow import config as qms_config
from workflow import form_drafts
from workflow.errors import RecordNotFound, ValidationFailed
from workflow.queries import records

bp = Blueprint("drafts", __name__, url_prefix="/drafts")


def record_key(number: str, step: str) -> str:
    return f"{number}/{step}"


def new_key(workflow: str) -> str:
    return f"new/{workflow}"


def _record_id(form_key: str) -> int | None:
    """The record a draft's form belongs to, if the person may see it (else 404: drafts
    cannot probe for records)."""
    if form_key.startswith("new/"):
        return None
    number = form_key.split("/", 1)[0]
    try:
        rec, _ = records.visible_record(read_session(), engine(), number, current_user.username)
    except RecordNotFound:
        abort(404)
    return rec.id


@bp.route("/save", methods=["POST"])
@login_required
def save() -> Any:
    """JSON ``{"form": KEY, "fields": [[name, value], ...]}``; CSRF in the X-CSRFToken
    header. Answers ``{"saved_at": ISO time}``, 413 when too large, 400 when malformed."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("fields"), list) \
            or not all(isinstance(p, list) and len(p) == 2 for p in body["fields"]):
        return jsonify({"error": "expected {\"form\": ..., \"fields\": [[name, value], ...]}"}), 400
    key = str(body.get("form") or "")
    try:
        form_drafts.check_key(key)
        rid = _record_id(key)
        at = form_drafts.save(engine(), current_user.id, key,
                              [(p[0], p[1]) for p in body["fields"]],
                              max_bytes=qms_config.settings().draft_max_bytes, record_id=rid)
    except ValidationFailed as exc:
        status = 413 if "draft" in exc.errors else 400
        return jsonify({"error": "; ".join(f"{k} {v}" for k, v in exc.errors.items())}), status
    return jsonify({"saved_at": at.isoformat()})


@bp.route("/discard", methods=["POST"])
@login_required
def discard() -> Any:
    """Forget the person's draft of a form (the restored-draft notice's button)."""
    key = request.form.get("form", "")
    try:
        form_drafts.check_key(key)
    except ValidationFailed:
        abort(400)
    form_drafts.discard(engine(), current_user.id, key)
    flash("The draft was discarded.", "info")
    return redirect(safe_next(request.form.get("back"), url_for("inbox.index")))


def restore(form_key: str) -> tuple[MultiDict[str, str] | None, Any]:
    """(form data to build the form from, the draft) when the person has a draft of the form,
    else (None, None)."""
    draft = form_drafts.get(read_session(), current_user.id, form_key)
    if draft is None:
        return None, None
    return MultiDict(draft.fields), draft


def kept(form_key: str) -> bool:
    """Whether the person has a draft of the form (asked on the request's read session
    before a submit: a submit without a draft costs no extra write)."""
    return form_drafts.exists(read_session(), current_user.id, form_key)


def forget(form_key: str, kept: bool = True) -> None:
    """The form was submitted: its draft (if ``kept``) is no longer needed."""
    if kept:
        form_drafts.discard(engine(), current_user.id, form_key)


def autosave_seconds() -> int:
    return qms_config.settings().draft_autosave_seconds
