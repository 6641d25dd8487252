"""The risk register (/risks): the risks of every risk assessment the viewer may see, open
ones by priority, overdue treatments, filters and CSV (workflow/queries/risks.py); and the
management review's report as PDF (workflow/queries/review_pdf.py)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from webapp import csvexport
from webapp.context import engine, read_session
from webapp.downloads import attachment
from workflow import clock
from workflow.errors import NotAuthorized, RecordNotFound, ValidationFailed, WorkflowError
from workflow.identity import users as identity
from workflow.queries import review_pdf, risks
from workflow.validation import gap

bp = Blueprint("risks", __name__)


@bp.route("/risks")
@login_required
def register() -> Any:
    s = read_session()
    user = identity.get_user(s, current_user.username)
    roles = identity.roles_of(s, user)
    args = {k: (request.args.get(k) or "").strip()[:40]
            for k in ("priority", "status", "q", "overdue", "closed")}
    rows = risks.register(s, engine().registry, user, roles, today=clock.now().date(),
                          priority=args["priority"] if args["priority"] in risks.PRIORITY_ORDER
                          else "",
                          status=args["status"] if args["status"] in risks.STATUSES else "",
                          overdue=args["overdue"] == "1", open_only=args["closed"] != "1",
                          text=args["q"])
    if request.args.get("format") == "csv":
        return csvexport.response((r.csv() for r in rows), risks.CSV_HEADER, "risk-register.csv")
    kept = {k: v for k, v in args.items() if v}
    return render_template("risks/register.html", rows=rows, args=kept,
                           summary=risks.summary(rows), statuses=risks.STATUSES,
                           frameworks={k: v[0] for k, v in gap.FRAMEWORKS.items()})


@bp.route("/risks/gap-analysis", methods=["POST"])
@login_required
def start_gap_analysis() -> Any:
    """Start a gap analysis pre-filled from the requirements catalogue (the template)."""
    chosen = [f for f in request.form.getlist("framework") if f in gap.FRAMEWORKS]
    title = (request.form.get("title") or "").strip()[:200]
    try:
        r = gap.start(engine(), current_user.username, title, chosen)
    except NotAuthorized as exc:
        flash(str(exc), "error")
        return redirect(url_for("risks.register"))
    except ValidationFailed as exc:
        flash("Gap analysis not started: " + "; ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in exc.errors.items()) + ".", "error")
        return redirect(url_for("risks.register"))
    flash(f"{r.number} started with a row per requirement.", "success")
    return redirect(url_for("records.view", number=r.number))


@bp.route("/records/<number>/review-report.pdf")
@login_required
def review_report(number: str) -> Any:
    try:
        pdf = review_pdf.review_report(read_session(), engine(), number.upper(),
                                       current_user.username)
    except RecordNotFound:
        abort(404)
    except WorkflowError:
        abort(404)
    return attachment(pdf, f"{number.upper()}-review-report.pdf", "application/pdf")
