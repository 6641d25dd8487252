"""Workflow definitions: list, read-only view with the diagram, and the process owners' draft
editor (CodeMirror over a plain textarea; validation at the line, diagram, diff, dry run,
submission for QA's signed approval). Approval itself happens on the DCR record page.
Every change goes through workflow/change_control/; nothing here commits."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from markupsafe import Markup

from webapp import errors, params
from webapp.context import engine, read_session
from webapp.diagram import render_svg
from workflow.change_control import drafts, publishing
from workflow.change_control import dry_run as dry_runs
from workflow.db.models import Record
from workflow.errors import (
    DefinitionError,
    NotAuthorized,
    StaleRecord,
    ValidationFailed,
    WorkflowError,
)
from workflow.queries import definitions
from workflow.spec.load import load_text

bp = Blueprint("definitions", __name__, url_prefix="/definitions")

NEW_TEMPLATE = """key: {key}
title: {title}
prefix: {prefix}
description: >
  What this workflow is for.
risk: high
process_owner: qa
due_in: 30d

roles:
  employee: Employee
  qa: Quality Assurance

fields:
  title: {{type: string, label: Title, max_length: 200}}
  description: {{type: text, label: Description}}

start:
  roles: [employee, qa]
  edits: [title, description]
  requires: [title]

states:
  open:
    label: Open
    initial: true
    owner: qa
  closed:
    label: Closed
    final: true
    outcome: done
  cancelled:
    label: Cancelled
    final: true
    outcome: void

transitions:
  - name: approve
    label: Approve
    from: open
    to: closed
    roles: [qa]
    signature: {{meaning: Approved, roles: [qa]}}
    separation: {{not_initiator: true}}
  - name: cancel
    label: Cancel
    from: open
    to: cancelled
    roles: [qa]
    reason_required: true
"""


def _editor() -> bool:
    return current_user.has(drafts.EDITOR_ROLE)


def _require_editor() -> None:
    if not _editor():
        abort(403, description="Only process owners edit workflow definitions; you can read "
              "them and their diagrams.")


def _svg(source: str) -> Markup | None:
    """The diagram of a source that builds (every text in it is escaped by render_svg)."""
    try:
        d = load_text(source, known_workflows=_AnyKey())
    except DefinitionError:
        return None
    return Markup(render_svg(d))  # noqa: S704 - render_svg escapes every text it writes


def _diagram(validation: Any) -> Markup | None:
    """The diagram of a draft text from its (cached) validation: no second parse."""
    if validation.loaded is None:
        return None
    return Markup(render_svg(validation.loaded))  # noqa: S704 - render_svg escapes every text


class _AnyKey(dict):
    def __contains__(self, key: object) -> bool:
        return True

    def get(self, key: Any, default: Any = None) -> Any:
        return None


def _changes(key: str) -> list[Record]:
    """The definition_change records of ``key``: its approval history."""
    return definitions.definition_changes(read_session(), key, drafts.CHANGE_WORKFLOW)


@bp.route("/")
@login_required
def index() -> Any:
    return render_template("definitions/index.html", items=drafts.list_definitions(engine()),
                           editor=_editor())


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new() -> Any:
    _require_editor()
    key = (request.form.get("key") or "").strip()
    title = (request.form.get("title") or "").strip()
    status = 200
    if request.method == "POST":
        if not re.fullmatch(r"[a-z][a-z0-9_]+", key) or not title:
            flash("Give a key (lower case letters, digits and _ ; e.g. supplier_audit) and a "
                  "title.", "error")
            status = 422
        elif drafts.published_source(engine(), key) is not None:
            flash(f"{key} exists: open it and start a draft from its current version.", "error")
            status = 422
        else:
            prefix = "".join(w[0] for w in key.split("_")).upper()[:6] or "REC"
            source = NEW_TEMPLATE.format(key=key, title=title, prefix=prefix)
            try:
                d = drafts.create(engine(), key, current_user.username, source=source)
            except WorkflowError as exc:
                errors.flash_error(exc)
                status = 422
            else:
                flash(f"Draft #{d.id} of the new workflow {key} was created.", "success")
                return redirect(url_for("definitions.draft", draft_id=d.id))
    return render_template("definitions/new.html", key=key, title=title), status


@bp.route("/<key>")
@login_required
def view(key: str) -> Any:
    item = next((i for i in drafts.list_definitions(engine()) if i.key == key), None)
    if item is None:
        abort(404)
    version = params.integer("version", minimum=1)
    pub = drafts.published_source(engine(), key, version)
    return render_template("definitions/view.html", item=item, pub=pub,
                           svg=_svg(pub[1]) if pub else None, changes=_changes(key),
                           editor=_editor())


@bp.route("/<key>/drafts", methods=["POST"])
@login_required
def start_draft(key: str) -> Any:
    _require_editor()
    try:
        d = drafts.create(engine(), key, current_user.username)
    except WorkflowError as exc:
        errors.flash_error(exc)
        return redirect(url_for("definitions.view", key=key))
    flash(f"Draft #{d.id} was started from {key} version {d.base_version}.", "success")
    return redirect(url_for("definitions.draft", draft_id=d.id))


def _draft_or_404(draft_id: int) -> drafts.DraftInfo:
    try:
        return drafts.get(engine(), draft_id)
    except WorkflowError:
        abort(404)


def _page(d: drafts.DraftInfo, *, source: str | None = None, validation: Any = None,
          stale: StaleRecord | None = None, dry: Any = None, status: int = 200,
          path: str = "", summary: str = "", expected: int | None = None) -> Any:
    text = d.source if source is None else source
    if validation is None:
        validation = drafts.validate(engine(), text, key=d.key, origin=f"draft #{d.id}")
    findings = [{"line": f.line, "message": f.message, "severity": f.severity,
                 "source": f.source} for f in validation.findings]
    return render_template(
        "definitions/draft.html", d=d, source=text, validation=validation,
        findings_json=json.dumps(findings), svg=_diagram(validation),
        diff=drafts.diff(engine(), d),
        stale=stale, dry=dry, editor=_editor() and d.editable, can_submit=_editor(),
        path=path, summary=summary, lines=text.splitlines(),
        # the version the text on the page was edited from: after a refused (stale) save it
        # stays the old one, so saving the same text again is refused again, never forced
        expected=expected if expected is not None else d.version), status


@bp.route("/drafts/<int:draft_id>", methods=["GET", "POST"])
@login_required
def draft(draft_id: int) -> Any:
    d = _draft_or_404(draft_id)
    if request.method == "GET":
        return _page(d)
    _require_editor()
    source = (request.form.get("source") or "").replace("\r\n", "\n")
    try:
        expected = int(request.form.get("expected_version", ""))
    except ValueError:
        abort(400)
    if request.form.get("action") == "validate":  # check only, nothing stored
        v = drafts.validate(engine(), source, key=d.key, origin=f"draft #{d.id}")
        flash("No problems found." if not v.findings else
              f"{len(v.errors)} error(s), {len(v.warnings)} warning(s): see the lines marked.",
              "success" if v.ok else "error")
        return _page(d, source=source, validation=v, status=200 if v.ok else 422,
                     expected=expected)
    try:
        d = drafts.save(engine(), draft_id, source, current_user.username, expected)
    except StaleRecord as exc:
        # someone saved in between: keep the user's text, refuse to overwrite theirs
        return _page(d, source=source, stale=exc, status=409, expected=expected)
    except WorkflowError as exc:
        errors.flash_error(exc)
        return _page(d, source=source, status=422, expected=expected)
    v = drafts.validate(engine(), d.source, key=d.key, origin=f"draft #{d.id}")
    if v.ok:
        flash(f"Saved (edit {d.version}). No errors" +
              (f"; {len(v.warnings)} warning(s)." if v.warnings else "."), "success")
    else:
        flash(f"Saved (edit {d.version}) with {len(v.errors)} error(s): see the lines marked. "
              "A draft with errors cannot be submitted.", "error")
    return _page(d, validation=v, status=200 if v.ok else 422)


@bp.route("/drafts/<int:draft_id>/dry-run", methods=["POST"])
@login_required
def dry_run(draft_id: int) -> Any:
    _require_editor()  # a dry run publishes the text in a sandbox: editors only (R-SEC-31)
    d = _draft_or_404(draft_id)
    path_text = (request.form.get("path") or "").strip()
    path = [p for p in re.split(r"[\s,>-]+", path_text) if p] or None
    try:
        result = dry_runs.dry_run_draft(engine(), draft_id, current_user.username, path=path)
    except NotAuthorized as exc:
        abort(403, description=str(exc))
    return _page(d, dry=result, path=path_text)


@bp.route("/drafts/<int:draft_id>/submit", methods=["POST"])
@login_required
def submit(draft_id: int) -> Any:
    _require_editor()
    d = _draft_or_404(draft_id)
    summary = (request.form.get("summary") or "").strip()
    try:
        expected = int(request.form.get("expected_version", ""))
    except ValueError:
        abort(400)
    try:
        r = publishing.submit(engine(), draft_id, current_user.username, summary,
                          expected_version=expected)
    except drafts.DraftInvalid as exc:
        flash(f"The draft cannot be submitted: {len(exc.findings)} error(s).", "error")
        return _page(d, status=422, summary=summary)
    except StaleRecord as exc:
        return _page(d, stale=exc, status=409, summary=summary)
    except ValidationFailed:
        flash("Say what changes and why (change summary).", "error")
        return _page(d, status=422, summary=summary)
    except NotAuthorized as exc:
        abort(403, description=str(exc))
    except WorkflowError as exc:
        errors.flash_error(exc)
        return _page(d, status=422, summary=summary)
    flash(f"Draft #{draft_id} was submitted for approval as {r.number}. QA approves it with "
          "an electronic signature; then it is published.", "success")
    return redirect(url_for("records.view", number=r.number))


@bp.route("/drafts/<int:draft_id>/withdraw", methods=["POST"])
@login_required
def withdraw(draft_id: int) -> Any:
    _require_editor()
    try:
        drafts.withdraw(engine(), draft_id, current_user.username,
                        request.form.get("reason") or "")
    except WorkflowError as exc:
        errors.flash_error(exc)
        return redirect(url_for("definitions.draft", draft_id=draft_id))
    flash(f"Draft #{draft_id} was withdrawn (it is kept).", "success")
    return redirect(url_for("definitions.index"))


@bp.route("/drafts/<int:draft_id>/diagram.svg")
@login_required
def draft_svg(draft_id: int) -> Any:
    d = _draft_or_404(draft_id)
    svg = _diagram(drafts.validate(engine(), d.source, key=d.key, origin=f"draft #{d.id}"))
    if svg is None:
        abort(404)
    return Response(str(svg), mimetype="image/svg+xml")


@bp.route("/<key>/diagram.svg")
@login_required
def version_svg(key: str) -> Any:
    pub = drafts.published_source(engine(), key, params.integer("version", minimum=1))
    if pub is None:
        abort(404)
    return Response(str(_svg(pub[1])), mimetype="image/svg+xml")
