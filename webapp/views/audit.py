"""System-wide audit trail for QA and administrators: filters and CSV export."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, render_template, request

from webapp import csvexport, params
from webapp.context import engine, read_session
from webapp.views.auth import roles_required
from workflow.audit.trail import SYSTEM_TRAIL_ROLES
from workflow.db.models import AuditEvent
from workflow.errors import ValidationFailed
from workflow.queries import audit as audit_trail

bp = Blueprint("audit", __name__, url_prefix="/audit")
PAGE = 100


def _filter() -> audit_trail.AuditFilter:
    a = request.args
    return audit_trail.AuditFilter(
        user=(a.get("user") or "").strip(), record=(a.get("record") or "").strip(),
        action=(a.get("action") or "").strip(), since=params.day("from"),
        until=params.day("to", end=True),
        before_id=params.integer("before", minimum=1),
        after_id=params.integer("after", minimum=0))


def _filename(f: audit_trail.AuditFilter) -> str:
    """audit-trail[-record][-action][-user][-from][-to].csv, safe for a file name."""
    a = request.args
    parts = ["audit-trail", f.record.upper(), f.action, f.user, a.get("from", ""),
             ("to-" + a["to"]) if a.get("to") else ""]
    name = "-".join(p for p in parts if p)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:150] + ".csv"


@bp.route("/")
@roles_required(*SYSTEM_TRAIL_ROLES)
def index() -> Any:
    f = _filter()
    s = read_session()
    if request.args.get("format") == "csv":
        try:
            rows = audit_trail.search(s, replace(f, before_id=None, after_id=None))
        except ValidationFailed as exc:
            raise params.BadQuery(*next(iter(exc.errors.items()))) from None
        return csv_response([ev for ev, _ in rows], _filename(f),
                            numbers={ev.id: n for ev, n in rows})
    # the filter without the page cursor, for the links
    args = {k: v for k, v in request.args.items() if k not in ("before", "after") and v}
    try:
        page = audit_trail.page(s, f, PAGE)
        problems: dict[str, str] = {}
    except ValidationFailed as exc:
        page, problems = audit_trail.TrailPage([], None, None), exc.errors
    return render_template(
        "audit/index.html", rows=audit_trail.readable(s, engine().registry, page.rows),
        actions=audit_trail.actions(), args=args, page=page, problems=problems,
        first=f.before_id is None and f.after_id is None), 400 if problems else 200


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
