"""The risk register (/risks): the risks of every risk assessment the viewer may see, open
ones by priority, overdue treatments, filters and CSV (workflow/queries/risks.py); and the
management review's report as PDF (workflow/queries/review_pdf.py)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request
from flask_login import current_user, login_required

from webapp import csvexport
from webapp.context import engine, read_session
from webapp.downloads import attachment
from workflow import clock
from workflow.errors import RecordNotFound, WorkflowError
from workflow.identity import users as identity
from workflow.queries import review_pdf, risks

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
                           summary=risks.summary(rows), statuses=risks.STATUSES)


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
