"""The inbox (landing page): my tasks and tasks open to my roles; claim, release, delegate."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length

from webapp import errors
from webapp.context import engine, read_session, safe_next
from webapp.forms import choices
from workflow import tasks as wf_inbox
from workflow.db.models import Task
from workflow.errors import TaskNotFound, WorkflowError
from workflow.identity import users as identity
from workflow.queries import definitions, training
from workflow.training import curricula
from workflow.training import matrix as training_matrix

bp = Blueprint("inbox", __name__)


class DelegateForm(FlaskForm):
    to = SelectField("Delegate to", validators=[DataRequired()])
    reason = StringField("Reason", validators=[DataRequired(), Length(max=500)])


def _workflows() -> dict[str, str]:
    return definitions.workflow_titles(read_session())


@bp.route("/")
@login_required
def index() -> Any:
    args = request.args
    scope = args.get("scope", "all")
    if scope not in ("all", "mine", "claimable"):
        scope = "all"
    workflows = _workflows()
    wf = args.get("workflow") or None
    if wf and wf not in workflows:
        wf = None
    try:
        s = read_session()
        user = identity.get_user(s, current_user.username)
        page = wf_inbox.inbox(s, user, workflow=wf, state=args.get("state") or None,
                              overdue=args.get("overdue") == "1",
                              search=(args.get("q") or "").strip()[:100] or None,
                              scope=scope, cursor=args.get("after") or None,
                              limit=25)
    except WorkflowError as exc:
        errors.flash_error(exc)
        return redirect(url_for("inbox.index"))
    defs = {}
    s = read_session()
    for row in page.rows:
        if row.definition_hash not in defs:
            defs[row.definition_hash] = engine().registry.by_hash(
                s, row.definition_hash).definition
    overdue_training = training.overdue_unheld(s, engine().registry, user,
                                               identity.roles_of(s, user))
    return render_template("inbox/index.html", page=page, workflows=workflows, wf=wf,
                           scope=scope, args=args, defs=defs, overdue_training=overdue_training,
                           cap=wf_inbox.COUNT_CAP)


@bp.route("/training")
@login_required
def my_training() -> Any:
    """The person's own trainings (the ``training`` capability): open, overdue, completed."""
    s = read_session()
    user = identity.get_user(s, current_user.username)
    mine = training.my_training(s, engine().registry, user, identity.roles_of(s, user))
    # what the person's roles require (the training matrix's row for them)
    m = training_matrix.matrix(s, engine().registry, username=user.username)
    required = [(col, m.people[0].cells[col.number]) for col in m.columns
                if m.people and m.people[0].cells[col.number].status != "not_required"]
    return render_template("inbox/training.html", mine=mine, workflows=_workflows(),
                           required=required, labels=training_matrix.STATUS_LABELS,
                           kinds=curricula.KIND_LABELS)


def _visible_task(task_id: int) -> Task:
    """The task, or 404 when it does not exist or its record is hidden from the user (so
    task ids cannot be used to probe records, and no message names a hidden record)."""
    try:
        return wf_inbox.visible_task(read_session(), engine(), task_id, current_user.username)
    except TaskNotFound:
        abort(404)


@bp.route("/tasks/<int:task_id>/claim", methods=["POST"])
@login_required
def claim(task_id: int) -> Any:
    # CSRF is checked for every POST by CSRFProtect (webapp/__init__.py)
    _visible_task(task_id)
    try:
        number = wf_inbox.claim(engine(), task_id, current_user.username)
        flash(f"You now hold the task on {number}.", "success")
    except WorkflowError as exc:
        errors.flash_error(exc)
    return redirect(safe_next(request.form.get("back"), url_for("inbox.index")))


@bp.route("/tasks/<int:task_id>/release", methods=["POST"])
@login_required
def release(task_id: int) -> Any:
    # CSRF is checked for every POST by CSRFProtect (webapp/__init__.py)
    _visible_task(task_id)
    try:
        number = wf_inbox.release(engine(), task_id, current_user.username)
        flash(f"The task on {number} is open to its role again.", "success")
    except WorkflowError as exc:
        errors.flash_error(exc)
    return redirect(safe_next(request.form.get("back"), url_for("inbox.index")))


@bp.route("/tasks/<int:task_id>/delegate", methods=["GET", "POST"])
@login_required
def delegate(task_id: int) -> Any:
    task = _visible_task(task_id)
    if task.assignee_id != current_user.id:
        abort(403, description="Only the person holding a task can delegate it.")
    form = DelegateForm()
    people = wf_inbox.delegate_candidates(read_session(), engine(), task_id,
                                          current_user.username)
    form.to.choices = choices([(u, f"{n} ({u})") for u, n in people], blank=False)
    if form.validate_on_submit():
        try:
            number = wf_inbox.delegate(engine(), task_id, current_user.username, form.to.data,
                                       form.reason.data)
        except WorkflowError as exc:
            errors.flash_error(exc)
        else:
            flash(f"The task on {number} was delegated.", "success")
            return redirect(url_for("inbox.index"))
    return render_template("inbox/delegate.html", form=form, task_id=task_id,
                           nobody=not people)
