"""Record search: every record a person may see, found by words and filtered, sorted and
paged by keyset (never OFFSET); and the person's saved searches.

One interface over two full-text indexes (migration 0011; written by triggers in the
statement that inserts or changes a record, so inside the same unit of work): SQLite's FTS5
table ``record_search`` and PostgreSQL's ``record_search.doc`` tsvector with a GIN index.
Both index the record number, title and every text value of the record's data; a search
matches the records holding every word of the query as a word or the start of one
("calib 2026" finds "Calibration ... DEV-2026-0001"), case-insensitively.

Visibility is :func:`workflow.rules.visible_clause`, the SQL twin of the engine's check: a
record the person may not open never appears in a page, a count or an export.

The web page (/records), its CSV export and the API (GET /api/v1/records) all call
:func:`search`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    column,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    table,
)
from sqlalchemy.orm import Session

from workflow import clock, rules
from workflow.db.engines import is_sqlite
from workflow.db.models import (
    OPEN_TASK,
    DefinitionVersion,
    Record,
    SavedSearch,
    Task,
    User,
)
from workflow.db.uow import Units
from workflow.errors import ValidationFailed
from workflow.registry import Registry
from workflow.spec.model import WorkflowDefinition

#: at most this many words of a query are searched for
MAX_WORDS = 8
#: counts stop here (the page says "1,000+"): a count never walks a million rows
COUNT_CAP = 1000
MAX_PAGE = 200
#: how many searches a person may keep
MAX_SAVED = 50
#: SQLite, a sort other than by id: up to this many matches are looked up and sorted;
#: beyond it the sort's index is walked instead
DENSE = 2000

_WORD = re.compile(r"[^\W_]+")
_TERM = re.compile(r'"([^"]*)"?|([^\s"]+)')
_fts = table("record_search", column("rowid"))
_tsv = table("record_search", column("record_id"), column("doc"))
#: the text search configuration of the index (migration 0011): no stemming, any language
_SIMPLE: ColumnElement[Any] = literal_column("'simple'::regconfig")

#: sort name -> (label, column, ascending); every sort ends with the record id, so the key
#: of a row is unique and a page boundary is exact
SORTS: dict[str, tuple[str, Any, bool]] = {
    "newest": ("Newest first", Record.id, False),
    "oldest": ("Oldest first", Record.id, True),
    "updated": ("Recently updated", Record.updated_at, False),
    "number": ("Number", Record.number, True),
    "due": ("Due soonest", Record.due_current, True),
}
STATUSES = ("", "open", "closed")


@dataclass(frozen=True)
class RecordQuery:
    """What a search asks for; empty values filter nothing. Times are UTC; ``*_to`` is
    exclusive."""

    q: str = ""
    workflow: str = ""
    state: str = ""
    status: str = ""  # "", "open", "closed"
    initiator: str = ""  # username of the person who created the record
    assignee: str = ""  # username holding an open task on it (the record's current owner)
    overdue: bool = False
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    sort: str = "newest"

    def words(self) -> list[str]:
        """The words searched for (lower case; punctuation separates words)."""
        return [w for t in self.terms() for w in t[0]]

    def terms(self) -> list[tuple[list[str], bool]]:
        """The query as terms, each (words that must stand next to each other, the last word
        may be the start of one): ``pump`` is a word or its start; ``B-1001`` the words b
        and 1001 (or its start) in a row; ``"oos 1"`` (quoted) exactly those words in a
        row. At most :data:`MAX_WORDS` words."""
        out: list[tuple[list[str], bool]] = []
        budget = MAX_WORDS
        for quoted, plain in _TERM.findall(self.q):
            words = [w.lower() for w in _WORD.findall(quoted or plain)][:budget]
            if words:
                out.append((words, not quoted))
                budget -= len(words)
        return out

    def check(self) -> None:
        """ValidationFailed naming each filter that cannot be used."""
        problems: dict[str, str] = {}
        if self.sort not in SORTS:
            problems["sort"] = f"expected one of {', '.join(SORTS)}"
        if self.status not in STATUSES:
            problems["status"] = "expected open or closed"
        for a, b, name in ((self.created_from, self.created_to, "created"),
                           (self.updated_from, self.updated_to, "updated")):
            if a is not None and b is not None and a >= b:
                problems[f"{name}_to"] = f"the {name} 'to' date is before the 'from' date"
        if problems:
            raise ValidationFailed(problems)


@dataclass(frozen=True)
class Page:
    """One page of results, in the order asked for."""

    records: list[Record]
    #: cursors for the pages after and before this one (None: there is none)
    next: str | None
    previous: str | None
    #: matching visible records, counted up to :data:`COUNT_CAP` (``capped``: there are more)
    total: int | None = None
    capped: bool = False
    #: printed name of each record's creator, by user id
    people: dict[int, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- cursors


def _encode(values: Sequence[Any], backwards: bool) -> str:
    raw = json.dumps([("b" if backwards else "a"), *[
        v.isoformat() if isinstance(v, datetime) else v for v in values]])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str, sort: str) -> tuple[Any, int, bool]:
    """(sort value, record id, backwards) of a cursor; ValidationFailed when it is not one
    this sort made."""
    bad = ValidationFailed({"cursor": "not a page of this search; start from the first page"})
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if not (isinstance(raw, list) and len(raw) == 3 and raw[0] in ("a", "b")
            and isinstance(raw[2], int) and not isinstance(raw[2], bool)
            and 0 < raw[2] < 2**63):
        raise bad
    value = raw[1]
    col = SORTS[sort][1]
    try:
        if col is Record.id:
            if value != raw[2]:
                raise bad
        elif col in (Record.updated_at, Record.due_current):
            value = None if value is None else clock.as_utc(datetime.fromisoformat(value))
        elif not isinstance(value, str):
            raise bad
    except (TypeError, ValueError):
        raise bad from None
    return value, raw[2], raw[0] == "b"


def _key(rec: Record, sort: str) -> list[Any]:
    col = SORTS[sort][1]
    return [getattr(rec, col.key), rec.id]


# --------------------------------------------------------------------------- the query


def published(session: Session, registry: Registry) -> list[WorkflowDefinition]:
    """Every published version of every workflow (what the visibility rule needs)."""
    return [registry.by_hash(session, h).definition
            for h in session.execute(select(DefinitionVersion.content_hash)).scalars()]


def fts_query(terms: list[tuple[list[str], bool]]) -> str:
    """The FTS5 query of :meth:`RecordQuery.terms`: every term, each a phrase."""
    return " AND ".join('"' + " ".join(ws) + '"' + ("*" if prefix else "") for ws, prefix in terms)


def text_match(session: Session, terms: list[tuple[list[str], bool]]) -> ColumnElement[bool]:
    """Records holding every term (:meth:`RecordQuery.terms`): FTS5 MATCH on SQLite,
    tsvector @@ tsquery on PostgreSQL (the one interface to both indexes). The words hold
    letters and digits only (nothing either query language could read as an operator)."""
    if is_sqlite(session):
        hits = select(_fts.c.rowid).where(
            literal_column("record_search").op("MATCH")(fts_query(terms)))
        return Record.id.in_(hits.scalar_subquery())
    tsq = " & ".join("(" + " <-> ".join(f"'{w}'" for w in ws) + (":*" if prefix else "") + ")"
                     for ws, prefix in terms)
    return exists().where(_tsv.c.record_id == Record.id,
                          _tsv.c.doc.op("@@")(func.to_tsquery(_SIMPLE, tsq)))


def _user_id(session: Session, username: str) -> int:
    uid = session.execute(select(User.id).where(
        func.lower(User.username) == username.strip().lower())).scalar_one_or_none()
    return uid if uid is not None else -1  # nobody: matches nothing


def _filtered(session: Session, registry: Registry, user: User, roles: set[str],
              rq: RecordQuery) -> tuple[Select[Record], Any]:
    """The query of the visible records matching ``rq`` (not ordered), and the column that
    orders by record id: ``records.id``, or on SQLite, when the words are searched and the
    sort is by id, the FTS5 table's rowid (the same number), so that FTS5 hands the matches
    over in that order and a page stops after its rows instead of collecting every match
    first (measured at 1M records: 66-87 ms a page before, see bench/web.py)."""
    q = select(Record).where(rules.visible_clause(user, roles, published(session, registry)))
    ident: Any = Record.id
    terms = rq.terms()
    if terms and is_sqlite(session) and SORTS[rq.sort][1] is Record.id:
        q = q.select_from(_fts).join(Record, Record.id == _fts.c.rowid).where(
            literal_column("record_search").op("MATCH")(fts_query(terms)))
        ident = _fts.c.rowid
    elif terms and is_sqlite(session):
        # another sort: a word found in few records -> look those up and sort them; a
        # common word -> walk the sort's index and keep the records that match (SQLite's
        # planner cannot tell the two apart; "+ 0" keeps it off the id lookup)
        match = literal_column("record_search").op("MATCH")(fts_query(terms))
        hits = select(_fts.c.rowid).where(match)
        few = len(session.execute(hits.limit(DENSE + 1)).all()) <= DENSE
        q = q.where((Record.id if few else Record.id + 0).in_(hits.scalar_subquery()))
    elif terms:
        q = q.where(text_match(session, terms))
    if rq.workflow:
        q = q.where(Record.workflow_key == rq.workflow)
    if rq.state:
        q = q.where(Record.state == rq.state)
    if rq.status == "open":
        q = q.where(Record.closed_at.is_(None))
    elif rq.status == "closed":
        q = q.where(Record.closed_at.is_not(None))
    if rq.initiator:
        q = q.where(Record.created_by_id == _user_id(session, rq.initiator))
    if rq.assignee:
        q = q.where(exists().where(Task.record_id == Record.id,
                                   Task.assignee_id == _user_id(session, rq.assignee),
                                   OPEN_TASK))
    if rq.overdue:
        q = q.where(Record.closed_at.is_(None), Record.due_current < clock.now())
    for col, lo, hi in ((Record.created_at, rq.created_from, rq.created_to),
                        (Record.updated_at, rq.updated_from, rq.updated_to)):
        if lo is not None:
            q = q.where(col >= lo)
        if hi is not None:
            q = q.where(col < hi)
    return q, ident


def _after(col: Any, asc: bool, value: Any, rid: int, forward: bool,
           ident: Any = Record.id) -> ColumnElement[bool]:
    """Rows after (``forward``) or before the row with key (value, rid) in the sort order
    (col asc/desc, then id the same way; NULLs of a nullable column last). ``ident``: the
    column holding the record id (see :func:`_filtered`)."""
    up = asc == forward  # walking towards larger values
    id_cond = ident > rid if up else ident < rid
    if col is Record.id:
        return id_cond
    if value is None:  # inside the NULL block (which is last in the forward order)
        return and_(col.is_(None), id_cond) if forward else or_(
            col.is_not(None), and_(col.is_(None), id_cond))
    beyond = col > value if up else col < value
    same = and_(col == value, id_cond)
    if not _nullable(col):
        return or_(beyond, same)
    if forward:
        return or_(beyond, same, col.is_(None))
    return or_(beyond, same)


def _order(col: Any, asc: bool, forward: bool, ident: Any = Record.id) -> list[Any]:
    up = asc == forward
    if col is Record.id:
        return [ident.asc() if up else ident.desc()]
    ordered = [col.asc() if up else col.desc(), Record.id.asc() if up else Record.id.desc()]
    if not _nullable(col):
        return ordered
    nulls = col.is_(None)  # False sorts before True: NULLs last in the forward order
    first = nulls.asc() if forward else nulls.desc()
    return [first, *ordered]


def _nullable(col: Any) -> bool:
    return bool(col.expression.nullable)


def search(session: Session, registry: Registry, user: User, roles: set[str],
           rq: RecordQuery, *, cursor: str | None = None, limit: int = 50,
           count: bool = False) -> Page:
    """One page of the records ``user`` (holding ``roles``) may see that match ``rq``.

    ``cursor``: a ``next``/``previous`` of an earlier page of the same query (None: the
    first page). ``count``: also count the matches, up to :data:`COUNT_CAP`.
    ValidationFailed for an unusable filter or cursor."""
    rq.check()
    limit = max(1, min(limit, MAX_PAGE))
    _label, col, asc = SORTS[rq.sort]
    base, ident = _filtered(session, registry, user, roles, rq)
    forward, value, rid = True, None, None
    if cursor:
        value, rid, backwards = _decode(cursor, rq.sort)
        forward = not backwards
    q = base
    if rid is not None:
        q = q.where(_after(col, asc, value, rid, forward, ident))
    rows = list(session.execute(q.order_by(*_order(col, asc, forward, ident))
                                .limit(limit + 1)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    if not forward:
        rows.reverse()
    nxt = prev = None
    if rows:
        # forward: more rows follow when there was one extra, and earlier ones exist when we
        # came from a cursor; backwards: the other way round
        has_next = more if forward else rid is not None
        has_prev = (rid is not None) if forward else more
        if has_next:
            nxt = _encode(_key(rows[-1], rq.sort), False)
        if has_prev:
            prev = _encode(_key(rows[0], rq.sort), True)
    total = capped = None
    if count:
        # SQLite: ordered like the page, so the planner walks the same way (unordered, it
        # went through records by workflow and asked FTS5 about each row: minutes at 1M);
        # PostgreSQL: unordered, so the GIN index finds the matches (ordered, it walked the
        # sort's index filtering each row: ~1 s at 1M)
        counted = base.with_only_columns(Record.id)
        if is_sqlite(session):
            counted = counted.order_by(*_order(col, asc, True, ident))
        n = session.execute(select(func.count()).select_from(
            counted.limit(COUNT_CAP + 1).subquery())).scalar_one()
        total, capped = min(n, COUNT_CAP), n > COUNT_CAP
    names: dict[int, str] = {}
    if rows:
        names = {uid: name for uid, name in session.execute(
            select(User.id, User.full_name).where(
                User.id.in_({r.created_by_id for r in rows})))}
    return Page(rows, nxt, prev, total, bool(capped), names)


def every(session: Session, registry: Registry, user: User, roles: set[str],
          rq: RecordQuery, *, limit: int) -> list[Record]:
    """Up to ``limit`` matching visible records in the order asked for (the CSV export)."""
    rq.check()
    _label, col, asc = SORTS[rq.sort]
    q, ident = _filtered(session, registry, user, roles, rq)
    q = q.order_by(*_order(col, asc, True, ident))
    return list(session.execute(q.limit(limit)).scalars())


# --------------------------------------------------------------------------- saved searches

#: the query-string names of a search (what a saved search keeps)
PARAMS = tuple(f.name for f in fields(RecordQuery))


def saved(session: Session, user: User) -> list[SavedSearch]:
    """The person's saved searches, by name."""
    return list(session.execute(select(SavedSearch).where(SavedSearch.user_id == user.id)
                                .order_by(SavedSearch.name)).scalars())


def save(units: Units, username: str, name: str, query: dict[str, str]) -> SavedSearch:
    """Keep ``query`` (search parameters by name; others are dropped) as the person's search
    ``name``; an existing search of that name is replaced. ValidationFailed for an empty or
    over-long name or too many searches."""
    name = " ".join(name.split())
    if not name or len(name) > 100:
        raise ValidationFailed({"name": "give the search a name of 1 to 100 characters"})
    kept = {k: str(v) for k, v in sorted(query.items()) if k in PARAMS and v not in ("", None)}
    with units.unit() as s:
        user = s.execute(select(User).where(User.username == username)).scalar_one()
        s.execute(delete(SavedSearch).where(SavedSearch.user_id == user.id,
                                            SavedSearch.name == name))
        if s.execute(select(func.count()).where(SavedSearch.user_id == user.id)
                     ).scalar_one() >= MAX_SAVED:
            raise ValidationFailed({"name": f"you keep {MAX_SAVED} searches already; "
                                            "delete one first"})
        row = SavedSearch(user_id=user.id, name=name, query=json.dumps(kept, sort_keys=True),
                          created_at=clock.now())
        s.add(row)
        s.flush()
        s.expunge(row)
        return row


def forget(units: Units, username: str, search_id: int) -> bool:
    """Delete the person's saved search ``search_id``; False when they have no such search
    (another person's search is never touched)."""
    with units.unit() as s:
        user = s.execute(select(User).where(User.username == username)).scalar_one()
        done = s.execute(delete(SavedSearch).where(SavedSearch.id == search_id,
                                                   SavedSearch.user_id == user.id))
        return bool(getattr(done, "rowcount", 0))
