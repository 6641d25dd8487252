"""KPI dashboard for quality leaders: tiles (number, numerator/denominator, period, status),
monthly SVG charts, drill-down to the records behind every number, CSV exports.

All numbers come from workflow.kpi (SQL aggregates over what the viewer may see); this
module only reads. The stored integrity verification is shown; *Verify now* queues a run for
the scheduler (it reads every audit event: never inside a request) and the page polls its
progress (webapp/static/verify_progress.js).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from webapp import charts, csvexport
from webapp.context import engine, read_session
from webapp.views.auth import roles_required
from workflow import backup as backups
from workflow.audit import integrity, runs
from workflow.identity import enablement
from workflow.kpi import SECURITY_ACTIONS, Kpi, Period
from workflow.kpi import specs as kpi_specs

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

# who may see what: the rules live with the KPIs and the integrity check
VIEW_ROLES = kpi_specs.VIEW_ROLES
SECURITY_ROLES = kpi_specs.SYSTEM_METRIC_ROLES
VERIFY_ROLES = integrity.VERIFY_ROLES

#: (area key, title, workflow filter value, metric keys)
SECTIONS: list[tuple[str, str, list[str]]] = [
    ("capa", "CAPA", ["capa.open", "capa.overdue", "capa.age", "capa.closure_days",
                      "capa.on_time", "capa.on_time_original", "capa.extended",
                      "capa.days_late", "capa.days_late_original", "capa.effectiveness",
                      "capa.recurrence"]),
    ("deviation", "Deviations", ["dev.created", "dev.triage_days", "dev.closure_days",
                                 "dev.capa_share"]),
    ("change_request", "Change control", ["cr.cycle_days", "cr.approval_days",
                                          "cr.void_share"]),
    ("training_assignment", "Training", ["trn.compliance", "trn.overdue",
                                         "trn.days_to_complete"]),
    ("access_review", "Access reviews", ["ar.on_time", "ar.revoked"]),
    # user-account metrics (system-wide, like the security events): qa, admin, isms only
    ("security", "Security", [*SECURITY_ACTIONS, "sec.totp_enrolled", "ar.uncovered"]),
]
CLASSES = ["critical", "major", "minor", "unclassified"]


def _period() -> Period:
    a = request.args
    try:
        if a.get("from") or a.get("to"):
            first = a.get("from") or a.get("to")
            last = a.get("to") or a.get("from")
            return Period.months(first, last)
    except ValueError:
        abort(400, description="Periods are months written YYYY-MM.")
    return Period.last_months(12)


def _all_sections(k: Kpi) -> list[tuple[str, str, list[str]]]:
    """The built-in sections, then one per workflow declaring KPIs the viewer may see
    records of (workflow.kpi.Kpi.declared_sections); a workflow that has a built-in section
    gets its declared KPIs in that section."""
    declared = {wf: (title, keys) for wf, title, keys in k.declared_sections()}
    out = [(wf, title, [*keys, *declared.pop(wf, ("", []))[1]]) for wf, title, keys in SECTIONS]
    return out + [(wf, title, keys) for wf, (title, keys) in declared.items()]


def _area(k: Kpi) -> str:
    area = request.args.get("workflow", "")
    return area if area in {s[0] for s in _all_sections(k)} else ""


def _sections(k: Kpi) -> list[tuple[str, str, list[str]]]:
    area = _area(k)
    out = []
    for key, title, keys in _all_sections(k):
        if key == "security" and not current_user.has(*SECURITY_ROLES):
            continue
        if area and key != area:
            continue
        out.append((key, title, keys))
    return out


def _query(**extra: Any) -> str:
    args = {k: v for k, v in request.args.items() if k in ("from", "to", "workflow") and v}
    args.update({k: v for k, v in extra.items() if v})
    return urlencode(args)


def _csv(rows: Iterable[Iterable[Any]], header: list[str], filename: str) -> Response:
    return csvexport.response(rows, header, filename)


def _kpi(session: Any) -> Kpi:
    return Kpi(session, engine().registry, current_user.username, _period())


@bp.route("/")
@roles_required(*VIEW_ROLES)
def index() -> Any:
    s = read_session()
    k = _kpi(s)
    sections = _sections(k)
    keys = [key for _, _, ks in sections for key in ks]
    metrics = k.metrics(keys)
    shown = {key for key, _, _ in sections}
    dev = k.deviations_by_class() if "deviation" in shown else None
    flow = k.flow("capa") if "capa" in shown else None
    sec = k.security_by_month() if "security" in shown else None
    docs = k.training_by_document() if "training_assignment" in shown else None
    verification = runs.latest_result(s)
    running = runs.active(s)
    progress = runs.status(running) if running is not None else None
    period, as_of = k.period, k.as_of
    thresholds = k.thresholds
    chart: dict[str, Any] = {}
    if dev is not None:
        links = {(m, c): url_for("dashboard.drill", metric="dev.created") + "?" +
                 _query(month=m, classification=c) for m in dev for c in CLASSES}
        chart["dev"] = charts.stacked_bars("Deviations reported per month by classification",
                                           dev, CLASSES, links)
        chart["dev_legend"] = charts.legend(CLASSES)
    if flow is not None:
        chart["capa"] = charts.lines("CAPAs opened and closed per month", flow,
                                     ["opened", "closed"])
        chart["capa_legend"] = charts.legend(["opened", "closed"])
    if sec is not None:
        series = list(SECURITY_ACTIONS.values())
        chart["sec"] = charts.stacked_bars("Security events per month", sec, series)
        chart["sec_legend"] = charts.legend(series)
    if "trn.compliance" in metrics:
        m = metrics["trn.compliance"]
        chart["gauge"] = charts.gauge("Training compliance", m.value,
                                      thresholds.get("trn.compliance"),
                                      f"{m.numerator} of {m.denominator} due")
    return render_template(
        "dashboard/index.html", sections=sections, metrics=metrics, specs=k.specs(), chart=chart,
        docs=docs, verification=verification, progress=progress, stale_after=runs.STALE_AFTER,
        period=period, as_of=as_of,
        area=_area(k), areas=[(a, t) for a, t, _ in _all_sections(k)
                              if a != "security" or current_user.has(*SECURITY_ROLES)],
        args=request.args, query=_query, months=_month_choices(),
        first_month=period.start.strftime("%Y-%m"),
        last_month=(period.end - timedelta(days=1)).strftime("%Y-%m"),
        can_verify=current_user.has(*VERIFY_ROLES),
        # the newest backup's age (workflow/backup.py; the same figure as /readyz)
        backup=backups.status(current_app.config["QMS_SETTINGS"]),
        # 21 CFR 11.100(b), 11.10(j): people enabled to sign (security section only)
        signers=enablement.signing_census(s) if "security" in shown else None)


def _month_choices() -> list[str]:
    return list(reversed(Period.last_months(36).month_keys()))


@bp.route("/drill/<metric>")
@roles_required(*VIEW_ROLES)
def drill(metric: str) -> Any:
    s = read_session()
    k = _kpi(s)
    try:
        spec = k.spec(metric)
    except KeyError:
        abort(404)
    if spec.workflow is None and not current_user.has(*SECURITY_ROLES):
        abort(403, description="Security metrics need one of the roles: "
                               f"{', '.join(SECURITY_ROLES)}.")
    part = "num" if request.args.get("part") == "num" else "all"
    params = {a: request.args[a] for a in ("month", "classification", "group")
              if request.args.get(a)}
    rows = k.drill(metric, part, **params)
    m = k.metric(metric) if not params else None
    period, as_of = k.period, k.as_of
    events = spec.workflow is None
    if request.args.get("format") == "csv":
        name = f"{metric}-{part}.csv"
        if events:
            return _csv(([e.at.isoformat(), e.actor, e.action, e.username, e.detail, e.id]
                         for e in rows), ["time_utc", "actor", "action", "username", "detail",
                                          "event_id"], name)
        return _csv(([r.number, r.title, r.workflow, r.state_label, r.created_at.isoformat(),
                      r.due.isoformat() if hasattr(r.due, "isoformat") else (r.due or ""),
                      r.closed_at.isoformat() if r.closed_at else "",
                      "yes" if r.counted else "no",
                      f"{r.value:.2f}" if r.value is not None else ""]
                     for r in rows),
                    ["number", "title", "workflow", "state", "created_utc", "due", "closed_utc",
                     "counted_in_numerator", "days"], name)
    return render_template("dashboard/drill.html", spec=spec, metric=m, rows=rows, part=part,
                           params=params, events=events, period=period, as_of=as_of,
                           query=_query)


@bp.route("/export.csv")
@roles_required(*VIEW_ROLES)
def export() -> Any:
    """Every metric on the page as one table."""
    s = read_session()
    k = _kpi(s)
    keys = [key for _, _, ks in _sections(k) for key in ks]
    metrics = k.metrics(keys)
    period, as_of = k.period, k.as_of
    return _csv(([m.key, m.label, "" if m.value is None else m.value, m.show,
                  "" if m.numerator is None else m.numerator,
                  "" if m.denominator is None else m.denominator,
                  "" if m.p90 is None else m.p90, m.status or "",
                  period.start.isoformat(), period.end.isoformat(), as_of.isoformat(),
                  current_user.username] for m in metrics.values()),
                ["metric", "label", "value", "unit", "numerator", "denominator", "p90", "status",
                 "period_start_utc", "period_end_utc", "as_of_utc", "viewer"], "kpis.csv")


@bp.route("/series/<name>.csv")
@roles_required(*VIEW_ROLES)
def series(name: str) -> Any:
    """The monthly tables behind the charts."""
    s = read_session()
    k = _kpi(s)
    if name == "deviations":
        data = k.deviations_by_class()
        return _csv(([m, *(data[m].get(c, 0) for c in CLASSES)] for m in data),
                    ["month", *CLASSES], "deviations-by-month.csv")
    if name == "capa-flow":
        data = k.flow("capa")
        return _csv(([m, data[m]["opened"], data[m]["closed"]] for m in data),
                    ["month", "opened", "closed"], "capa-flow-by-month.csv")
    if name == "training-documents":
        return _csv(([d, c, n, f"{c / n:.4f}" if n else ""]
                     for d, c, n in k.training_by_document()),
                    ["document", "completed", "due", "compliance"], "training-by-document.csv")
    if name == "security" and current_user.has(*SECURITY_ROLES):
        data = k.security_by_month()
        actions = list(SECURITY_ACTIONS.values())
        return _csv(([m, *(data[m].get(a, 0) for a in actions)] for m in data),
                    ["month", *actions], "security-by-month.csv")
    abort(404)


@bp.route("/verify", methods=["POST"])
@roles_required(*VERIFY_ROLES)
def verify() -> Any:
    """Queue a verification for the scheduler and return at once (R-SEC-40): it reads every
    audit event, so it never runs inside a request; the page shows its progress."""
    run_id, queued = runs.request(engine(), f"web:{current_user.username}")
    if queued:
        flash(f"Verification queued (run #{run_id}): the scheduler starts it within a minute; "
              "its progress and result are shown here.", "success")
    else:
        flash(f"A verification is already queued or running (run #{run_id}); its progress "
              "is shown here.", "info")
    return redirect(url_for("dashboard.index") + ("?" + _query() if _query() else "") +
                    "#sec-integrity", code=303)


@bp.route("/verify/<int:run_id>.json")
@roles_required(*VIEW_ROLES)
def verify_status(run_id: int) -> Any:
    """The progress of one verification run (polled by webapp/static/verify_progress.js)."""
    run = runs.get(read_session(), run_id)
    if run is None:
        abort(404)
    return jsonify(runs.status(run).as_dict())
