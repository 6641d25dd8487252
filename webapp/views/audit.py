"""System-wide audit trail for QA and administrators: filters and CSV export."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, render_template, request

from webapp import csvexport, params
from webapp.context import read_session
from webapp.views.auth import roles_required
from workflow.audit.trail import SYSTEM_TRAIL_ROLES
from workflow.db.models import AuditEvent
from workflow.queries import audit as audit_trail

bp = Blueprint("audit", __name__, url_prefix="/audit")
PAGE = 100


@bp.route("/")
@roles_required(*SYSTEM_TRAIL_ROLES)
def index() -> Any:
    a = request.args
    f = audit_trail.AuditFilter(user=a.get("user") or "", record=a.get("record") or "",
                                action=a.get("action") or "", since=params.day("from"),
                                until=params.day("to", end=True),
                                before_id=params.integer("before"))
    s = read_session()
    actions = audit_trail.actions(s)
    if a.get("format") == "csv":
        rows = audit_trail.search(s, f)
        return csv_response([ev for ev, _ in rows], "audit-trail.csv",
                            numbers={ev.id: n for ev, n in rows})
    rows = audit_trail.search(s, f, limit=PAGE + 1)
    more = rows[PAGE][0].id + 1 if len(rows) > PAGE else None
    return render_template("audit/index.html", rows=rows[:PAGE], actions=actions, args=a,
                           more=rows[PAGE - 1][0].id if more else None)


def csv_response(events: list[AuditEvent], filename: str,
                 numbers: dict[int, str | None] | None = None) -> Response:
    """The audit-trail CSV (webapp/csvexport.py: formula cells neutralised, ``?bom=1``)."""
    rows = ([ev.chain, ev.seq, ev.at.isoformat(), ev.actor_name, ev.action,
             (numbers or {}).get(ev.id, ev.record_id) or "", ev.record_version or "",
             ev.transition or "", ev.from_state or "", ev.to_state or "",
             json.dumps(ev.changes, ensure_ascii=False, sort_keys=True),
             ev.reason or "", ev.hash] for ev in events)
    return csvexport.response(rows, ["chain", "seq", "time_utc", "actor", "action", "record",
                                     "record_version", "transition", "from_state", "to_state",
                                     "changes", "reason", "hash"], filename)
