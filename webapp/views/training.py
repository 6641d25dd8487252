"""The training matrix pages: people x documents (current, due, overdue, not trained, not
required) with the compliance figures and their drill-down, one document's trainees on its
effective version, and the CSV export. Read-only: everything comes from
workflow/training/matrix.py on the request's read session."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request

from webapp import csvexport
from webapp.context import engine, read_session
from webapp.views.auth import roles_required
from workflow.queries import documents as docs
from workflow.training import curricula as cur
from workflow.training import matrix as tm
from workflow.training import stats

bp = Blueprint("training", __name__, url_prefix="/training")

#: who may see everyone's training (a person sees their own under "My training")
VIEW_ROLES = ("qa", "training_coordinator", "trainer", "admin", "process_owner")


def _filters() -> dict[str, str | None]:
    a = request.args
    return {"role": (a.get("role") or "").strip()[:40] or None,
            "document": (a.get("document") or "").strip()[:120] or None,
            "status": a.get("status") if a.get("status") in tm.STATUSES else None,
            "department": (a.get("department") or "").strip()[:100] or None}


@bp.route("/matrix")
@roles_required(*VIEW_ROLES)
def matrix() -> Any:
    s = read_session()
    reg = engine().registry
    f = _filters()
    m = tm.matrix(s, reg, role=f["role"], document=f["document"], department=f["department"])
    people = m.people
    if f["status"]:
        people = [p for p in people if any(c.status == f["status"] for c in p.cells.values())]
    roles = sorted({c.role for c in cur.active(s, reg)})
    # over everyone (the filters narrow the table, not this summary)
    by_department = tm.compliance_by_department(
        m if not (f["role"] or f["document"] or f["department"])
        else tm.matrix(s, reg, now=m.as_of))
    return render_template(
        "training/matrix.html", m=m, people=people, f=f, roles=roles,
        by_document=tm.compliance_by_document(m),
        by_role=tm.compliance_by_role(s, reg, now=m.as_of),
        by_department=by_department, departments=[c.key for c in by_department],
        figures=stats.figures(s, reg, m), statuses=tm.STATUSES, labels=tm.STATUS_LABELS,
        kinds=cur.KIND_LABELS)


@bp.route("/matrix.csv")
@roles_required(*VIEW_ROLES)
def export() -> Any:
    f = _filters()
    m = tm.matrix(read_session(), engine().registry, role=f["role"], document=f["document"],
                  department=f["department"])
    rows = tm.export_rows(m)
    if f["status"]:
        rows = [rows[0]] + [r for r in rows[1:] if r[6] == f["status"]]
    return csvexport.response(rows[1:], rows[0], f"training-matrix-{m.as_of:%Y%m%d}.csv")


@bp.route("/documents/<number>")
@roles_required(*VIEW_ROLES)
def document(number: str) -> Any:
    s = read_session()
    reg = engine().registry
    versions = docs.document_versions(s, number, registry=reg)
    if not versions:
        abort(404, description=f"There is no controlled document {number}.")
    m = tm.matrix(s, reg, document=number)
    col = m.columns[0] if m.columns else tm.columns(s, reg, [number])[0]
    trained = [p for p in m.people if p.cells.get(number) and
               p.cells[number].status == "current"]
    untrained = [p for p in m.people if p.cells.get(number) and
                 p.cells[number].status not in ("current", "not_required")]
    return render_template("training/document.html", col=col, versions=versions,
                           trained=trained, untrained=untrained, labels=tm.STATUS_LABELS,
                           kinds=cur.KIND_LABELS)
