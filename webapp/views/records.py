"""Records: create from a definition's form, view (fields, timeline, signatures, links, tasks)
and fire transitions with their form and signature dialog."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from markupsafe import Markup

from webapp import downloads, errors, forms
from webapp.context import engine, policy, read_session
from webapp.diagram import render_svg
from webapp.views import drafts
from webapp.views.audit import csv_response
from workflow import blobs
from workflow.db.models import Record
from workflow.errors import (
    AttachmentDamaged,
    AttachmentRefused,
    ChangeReasonRequired,
    RecordNotFound,
    StaleRecord,
    ValidationFailed,
    WorkflowError,
)
from workflow.identity import lockout
from workflow.identity import users as identity
from workflow.queries import audit as audit_trail
from workflow.queries import definitions, directories, records
from workflow.signatures.part11 import PasswordSignature

bp = Blueprint("records", __name__, url_prefix="/records")


def _users() -> list[tuple[str, str]]:
    return directories.pickable_users(read_session())


def _startable() -> list[Any]:
    """Workflows the current user may start (newest versions)."""
    return [d for d in definitions.latest_definitions(read_session(), engine().registry)
            if current_user.has(*d.start_roles)]


@bp.route("/new")
@login_required
def choose() -> Any:
    return render_template("records/choose.html", definitions=_startable())


@bp.route("/new/<workflow>", methods=["GET", "POST"])
@login_required
def new(workflow: str) -> Any:
    d = next((x for x in _startable() if x.key == workflow), None)
    if d is None:
        # an action the user may not take: 403; an unknown workflow: 404
        if definitions.is_known(read_session(), workflow):
            abort(403, description="None of your roles may start this kind of record.")
        abort(404)
    multipart = bool(forms.file_fields(d, d.start_edits))
    if multipart:
        downloads.allow_uploads()
    Form = forms.build_form(d, d.start_edits, _users())
    key = drafts.new_key(d.key)
    restored, draft = drafts.restore(key) if request.method == "GET" else (None, None)
    if restored is not None:
        form = Form(formdata=restored)
    else:
        form = Form(data=forms.initial(d, d.start_edits, {}) if request.method == "GET"
                    else None)
    if _added_row(form, d.start_edits):
        return render_template("records/new.html", d=d, form=form, csv_fields=forms.csv_fields(d),
                               required=set(d.start_requires), multipart=multipart,
                               draft_key=key)
    if form.validate_on_submit():
        data = forms.posted(d, d.start_edits, form)
        try:
            forms.add_csv_rows(d, d.start_edits, request.files, data)
            downloads.attach_uploads(data, current_user.username)
            data = {k: v for k, v in data.items() if v not in (None, [])}
            had_draft = drafts.kept(key)
            r = engine().start(workflow, current_user.username, data)
        except forms.CsvError as exc:
            _csv_error(form, exc)
        except AttachmentRefused as exc:
            _upload_error(form, exc)
        except ValidationFailed as exc:
            _field_errors(form, exc)
        except WorkflowError as exc:
            errors.flash_error(exc)
        else:
            drafts.forget(key, had_draft)
            flash(f"{r.number} was created.", "success")
            return redirect(url_for("records.view", number=r.number))
    return render_template("records/new.html", d=d, form=form, csv_fields=forms.csv_fields(d),
                           required=set(d.start_requires), multipart=multipart,
                           draft_key=key, draft=draft
                           ), 200 if not form.errors else 422


def _added_row(form: Any, names: tuple[str, ...]) -> bool:
    """The form's "Add a row" button without JavaScript: one more blank row, nothing saved
    (the JavaScript in static/rows.js adds it in the page)."""
    name = request.form.get("add_row") if request.method == "POST" else None
    if not name or name not in names or form[name].type != "FieldList":
        return False
    form[name].append_entry()
    return True


def _upload_error(form: Any, exc: AttachmentRefused) -> None:
    """A refused upload (nothing of it was stored): the field says why."""
    name = getattr(exc, "field", None)
    if name in form:
        form[name].errors = [*form[name].errors, exc.message]
    flash(exc.message, "error")


def _csv_error(form: Any, exc: forms.CsvError) -> None:
    form[exc.field].errors = [*form[exc.field].errors, str(exc)]
    flash(str(exc), "error")


def _field_errors(form: Any, exc: ValidationFailed) -> None:
    for name, msg in exc.errors.items():
        if name in form:
            form[name].errors = list(form[name].errors) + [msg]
        else:
            flash(f"{name}: {msg}", "error")
    flash("Please correct the highlighted fields.", "error")


def _load(number: str) -> tuple[Record, Any]:
    return records.visible_record(read_session(), engine(), number,  # 404 when not visible
                                  current_user.username)


@bp.route("/<number>")
@login_required
def view(number: str) -> Any:
    page = records.record_page(read_session(), engine(), number, current_user.username)
    # where the record stands: the states it went through, oldest first (also as text)
    path = [ev for ev in page.events if ev.to_state is not None]
    svg = Markup(render_svg(  # every text in it is escaped by render_svg
        page.definition, f"{page.definition.title}: {page.record.number}",
        current=page.record.state,
        taken=frozenset((ev.from_state, ev.transition) for ev in path
                        if ev.from_state and ev.transition),
        visited=frozenset(ev.to_state for ev in path)))
    return render_template("records/view.html", rec=page.record, d=page.definition,
                           path=path, diagram=svg,
                           events=page.events, sigs=page.signatures, links=page.links,
                           tasks=page.tasks, available=page.available, creator=page.creator,
                           people=page.people, superseded=page.superseded,
                           options=page.options, waiting=page.waiting,
                           extensions=page.extensions, extension_refused=page.extension_refused,
                           extension_decide=page.extension_decide, changed=page.changed,
                           damaged=page.damaged)


def _people(d: Any, rec: Record) -> dict[str, str]:
    """Printed names for the usernames the record's user fields hold."""
    return records.field_people(read_session(), d, rec)


@bp.route("/<number>/do/<transition>", methods=["GET", "POST"])
@login_required
def fire(number: str, transition: str) -> Any:
    rec, d = _load(number)
    t = d.transitions.get(transition)
    if t is None or rec.state not in t.sources:
        flash(f"{rec.number} is in state {d.states[rec.state].label!r}; "
              f"{transition.replace('_', ' ')!r} is not possible now.", "error")
        return redirect(url_for("records.view", number=rec.number))
    option = next((o for o in engine().step_options(rec.number, current_user.username,
                                                    session=read_session())
                   if o.transition.name == t.name), None)
    if request.method == "GET" and (option is None or not option.offered):
        # the form of a step the user may not take is not offered (the engine refuses the
        # POST too, with the same rule): the 403 names the rule that refuses it
        abort(403, description=option.refused if option is not None else (
            f"{t.label!r} on {rec.number} needs one of these roles: "
            f"{', '.join(d.roles.get(r, r) for r in t.roles)}; you hold none of them."))
    # a step taken before it opens (not_before, early: reason) needs a reason
    early = option is not None and option.note is not None
    multipart = bool(forms.file_fields(d, t.edits))
    if multipart:
        downloads.allow_uploads()
    Form = forms.build_form(d, t.edits, _users(), reason=t.reason_required or early,
                            signature=t.signature is not None,
                            change_reason=any(rec.data.get(f) not in (None, "", [],
                                                                      d.fields[f].default)
                                              for f in t.edits))
    key = drafts.record_key(rec.number, t.name)
    restored, draft = drafts.restore(key) if request.method == "GET" else (None, None)
    if restored is not None:
        # what the person typed before, with the record version they typed it against: if
        # the record changed since, submitting says so (StaleRecord) instead of overwriting
        form = Form(formdata=restored)
        if hasattr(form, "sig_username"):
            form.sig_username.data = current_user.username
    elif request.method == "GET":
        form = Form(data={**forms.initial(d, t.edits, rec.data),
                          "expected_version": rec.version,
                          "sig_username": current_user.username})
    else:
        form = Form()
    stale = None
    status = 200
    if _added_row(form, t.edits):
        pass
    elif form.validate_on_submit():
        data = forms.posted(d, t.edits, form)
        try:
            forms.add_csv_rows(d, t.edits, request.files, data)
            downloads.attach_uploads(data, current_user.username, rec.number)
        except forms.CsvError as exc:
            _csv_error(form, exc)
            status = 422
        except AttachmentRefused as exc:
            _upload_error(form, exc)
            status = errors.page_status(exc)
        else:
            sig = None
            if t.signature is not None:
                sig = PasswordSignature(form.sig_username.data, form.sig_password.data,
                                        (form.sig_totp.data or "").strip() or None,
                                        session_token=session.get("token"))
            try:
                expected = int(form.expected_version.data)
            except (TypeError, ValueError):
                abort(400)
            had_draft = drafts.kept(key)
            try:
                r = engine().fire(rec.number, transition, current_user.username, data,
                                  signature=sig, reason=(form.reason.data or "").strip() or None,
                                  expected_version=expected)
            except RecordNotFound:
                abort(404)
            except WorkflowError as exc:  # the page's status for each error: webapp/errors.py
                status = errors.page_status(exc)
                if isinstance(exc, StaleRecord):
                    stale = exc  # the page explains and offers to reload
                elif isinstance(exc, ValidationFailed):
                    _field_errors(form, exc)
                else:
                    errors.flash_error(exc)
                    if isinstance(exc, ChangeReasonRequired):
                        form.reason.errors = [*form.reason.errors, "Give the reason for change."]
            else:
                drafts.forget(key, had_draft)
                if r.moved:
                    flash(f"{t.label}: done. {r.number} is now {d.states[r.state].label}.", "success")
                else:
                    flash(f"Your signature is recorded; {r.signatures_needed} more signature(s) "
                          "are needed before the record moves on.", "success")
                for created in r.created:
                    if created != r.number:
                        flash(f"{created} was created and linked.", "info")
                return redirect(url_for("records.view", number=r.number))
    elif request.method == "POST":
        status = 422
    if hasattr(form, "sig_password"):
        form.sig_password.data = ""  # never echo a password back
    return render_template("records/fire.html", rec=rec, d=d, t=t, form=form, stale=stale,
                           needs_totp=not current_user.signed_before,
                           attempts_left=_attempts_left() if t.signature else None,
                           csv_fields=forms.csv_fields(d), people=_people(d, rec),
                           multipart=multipart, damaged={},
                           note=option.note if option else None,
                           waiting=engine().waiting_for(rec, t, session=read_session()),
                           draft_key=key, draft=draft), status


def _attempts_left() -> int | None:
    """Failed attempts the signer may still make before the account locks, once one failed
    (None: none failed yet, or no lockout)."""
    me = identity.find_user(read_session(), current_user.username)
    if me is None or not me.failed_attempts:
        return None
    return lockout.attempts_left(me, policy())


@bp.route("/<number>/audit")
@login_required
def audit(number: str) -> Any:
    rec, d = _load(number)
    events = [ev for ev, _ in records.audit_events(read_session(), rec)]
    if request.args.get("format") == "csv":
        return csv_response(events, f"{rec.number}-audit-trail.csv",
                            numbers={ev.id: rec.number for ev in events})
    rows = audit_trail.readable(read_session(), engine().registry,
                                [(ev, rec.number) for ev in events])
    return render_template("records/audit.html", rec=rec, d=d, rows=rows)



@bp.route("/<number>/copy.<fmt>")
@login_required
def copy(number: str, fmt: str) -> Any:
    """Download the record's signed true copy (PDF, JSON, or the PDF with its signature as
    ZIP): audited with the person's name; a record they may not see is a 404."""
    if fmt not in downloads.COPY_FORMATS:
        abort(404)
    return downloads.true_copy(number, fmt, current_user.username,
                               "true copy downloaded from the record page")


@bp.route("/<number>/files/<sha256>")
@login_required
def attachment(number: str, sha256: str) -> Any:
    """Download a file the record holds (or held): only for people who may see the record
    (404 otherwise), audited with their name, as an attachment never shown inline."""
    if not blobs.SHA256.match(sha256):
        abort(404)
    try:
        return downloads.attachment_file(number, sha256, current_user.username)
    except RecordNotFound:
        abort(404)
    except AttachmentDamaged as exc:  # not handed out; verify-audit names it too
        abort(409, description=exc.message)
