"""Find any record (/records): full-text search with filters, sorts, keyset paging, saved
searches and a CSV export of the result. Reads through workflow/queries/search.py, which
applies the one visibility rule."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from webapp import csvexport, params
from webapp.context import engine, read_session
from workflow.errors import ValidationFailed
from workflow.identity import users as identity
from workflow.queries import definitions, directories, search
from workflow.queries.search import RecordQuery

bp = Blueprint("search", __name__, url_prefix="/records")
PAGE = 25
#: the most rows one CSV export holds (the page says so when the result is longer)
EXPORT_MAX = 10_000


def query_from(args: Any) -> RecordQuery:
    """The search the query string asks for (dates through webapp.params: a bad one is a
    400 naming it)."""
    def text(name: str, n: int = 100) -> str:
        return (args.get(name) or "").strip()[:n]

    return RecordQuery(
        q=text("q", 200), workflow=text("workflow", 40), state=text("state", 40),
        status=text("status", 10), initiator=text("initiator", 64),
        assignee=text("assignee", 64), overdue=args.get("overdue") in ("1", "true"),
        created_from=params.day("created_from"), created_to=params.day("created_to", end=True),
        updated_from=params.day("updated_from"), updated_to=params.day("updated_to", end=True),
        sort=text("sort", 20) or "newest")


def _viewer() -> tuple[Any, set[str]]:
    s = read_session()
    user = identity.get_user(s, current_user.username)
    return user, identity.roles_of(s, user)


def _args() -> dict[str, str]:
    """The current search's parameters (no cursor, no format), for links and saving."""
    return {k: v for k, v in request.args.items()
            if k in search.PARAMS and v not in ("", None)}


def _filename(rq: RecordQuery) -> str:
    """records[-workflow][-state][-words][-overdue].csv, safe for a file name."""
    parts = ["records", rq.workflow, rq.state, rq.status, "-".join(rq.words()[:3]),
             "overdue" if rq.overdue else ""]
    name = "-".join(p for p in parts if p)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120] + ".csv"


@bp.route("/")
@login_required
def index() -> Any:
    rq = query_from(request.args)
    user, roles = _viewer()
    s = read_session()
    if request.args.get("format") == "csv":
        return _csv(rq, user, roles)
    try:
        cursor = request.args.get("cursor") or None
        # counted on the first page only (the later pages say "page n of the result")
        page = search.search(s, engine().registry, user, roles, rq, cursor=cursor,
                             limit=PAGE, count=cursor is None)
        problems: dict[str, str] = {}
    except ValidationFailed as exc:
        page, problems = search.Page([], None, None, 0), exc.errors
    latest = definitions.latest_definitions(s, engine().registry)
    defs = {r.definition_hash: engine().registry.by_hash(s, r.definition_hash).definition
            for r in page.records}
    return render_template(
        "records/search.html", page=page, rq=rq, args=_args(), problems=problems,
        workflows={d.key: d.title for d in latest},
        states=[(d.key, name, st.label) for d in latest for name, st in d.states.items()
                if not rq.workflow or d.key == rq.workflow],
        sorts={k: v[0] for k, v in search.SORTS.items()}, defs=defs,
        saved=[(x, saved_link(x.query)) for x in search.saved(s, user)],
        export_max=EXPORT_MAX), 400 if problems else 200


def _csv(rq: RecordQuery, user: Any, roles: set[str]) -> Response:
    s = read_session()
    try:
        rows = search.every(s, engine().registry, user, roles, rq, limit=EXPORT_MAX)
    except ValidationFailed as exc:
        raise params.BadQuery(next(iter(exc.errors)), next(iter(exc.errors.values()))) from None
    reg = engine().registry
    names = directories.names_by_id(s, {r.created_by_id for r in rows})

    def line(r: Any) -> list[Any]:
        d = reg.by_hash(s, r.definition_hash).definition
        st = d.states.get(r.state)
        return [r.number, r.title, d.title, st.label if st else r.state,
                "closed" if r.closed_at else "open", r.outcome or "",
                names.get(r.created_by_id, ""), r.created_at.isoformat(),
                r.updated_at.isoformat(), r.due_current.isoformat() if r.due_current else "",
                r.closed_at.isoformat() if r.closed_at else ""]

    return csvexport.response(
        (line(r) for r in rows),
        ["number", "title", "workflow", "state", "status", "outcome", "initiator",
         "created_utc", "updated_utc", "due_utc", "closed_utc"], _filename(rq))


@bp.route("/searches", methods=["POST"])
@login_required
def save() -> Any:
    kept = dict(parse_qsl(request.form.get("query", ""))[:len(search.PARAMS) * 2])
    try:
        row = search.save(engine(), current_user.username, request.form.get("name", ""), kept)
    except ValidationFailed as exc:
        flash(" ".join(exc.errors.values()).capitalize() + ".", "error")
        return redirect(url_for("search.index", **kept))
    flash(f"Search \u201c{row.name}\u201d saved.", "success")
    return redirect(url_for("search.index", **json.loads(row.query)))


@bp.route("/searches/<int:search_id>/delete", methods=["POST"])
@login_required
def forget(search_id: int) -> Any:
    if search.forget(engine(), current_user.username, search_id):
        flash("The saved search was deleted.", "success")
    else:
        flash("No such saved search of yours.", "error")
    return redirect(url_for("search.index"))


def saved_link(query: str) -> str:
    """The /records URL of a saved search's query."""
    try:
        kept = json.loads(query)
    except ValueError:
        kept = {}
    return url_for("search.index") + ("?" + urlencode(kept) if kept else "")
