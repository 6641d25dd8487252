"""Several metrics from one statement, and none for a workflow without records
(R-PERF-70, R-PERF-71).

A metric is an aggregate over its cohort (:mod:`workflow.kpi.cohorts`); the cohort stays the
one definition of what counts. Many cohorts select the SAME rows and differ only in their
``hit`` and ``value`` columns (a CAPA's open cohort counts, flags the overdue ones and ages
them; an effectiveness check is passed or taken early). Such cohorts are aggregated in one
statement: the first cohort's FROM and WHERE with every member's hit and value as columns,
each aggregated exactly as :meth:`workflow.kpi.calculator.Kpi.metric` aggregates one cohort
(count, sum of hits, mean and sum of values), over the same rows in the same plan, so every
figure is the one a statement of its own gives.

Cohorts are grouped by the cache key (structure and bound values) of their rows alone;
a member joins a group only when its hit and value read nothing but the group's own FROM
(tables, not subqueries built per cohort), so a member can never add a FROM of its own.

A median needs its values in order, but only three of them: the middle one or two and the
90th percentile. The database sorts them (a window over the cohort's rows) and returns those
rows alone, with the group's counts beside them, instead of every row of the cohort (a year
of deviations at a million records is 200,000 rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.sql.selectable import Join, Subquery
from sqlalchemy.sql.visitors import replacement_traverse

from workflow.db.models import Record

#: (rows, sum of hits, mean of values, sum of values) of one cohort
Aggregates = tuple[int, int, Any, Any]

#: a median metric's figures: (values that are not NULL, their median, their 90th
#: percentile), exactly what ``statistics.median`` and ``values[int(0.9 * n)]`` give on
#: the sorted values (both None without a value)
Median = tuple[int, float | None, float | None]

#: the aggregates of an empty cohort (what the statement would return)
EMPTY: Aggregates = (0, 0, None, 0)
NO_VALUES: Median = (0, None, None)


def order_positions(n: Any) -> tuple[Any, Any, Any]:
    """The 0-based positions in ``n`` sorted values of the two middle values (the same one
    when ``n`` is odd) and the 90th percentile (``int(0.9 * n)``, in integers: 9n // 10).
    ``n`` is a number, or a SQL integer expression (the statement picks the same rows)."""
    return (n - 1) // 2, n // 2, (9 * n) // 10


def median_of(n: int, at: Mapping[int, float]) -> Median:
    """The :data:`Median` of ``n`` sorted values from the values at their
    :func:`order_positions` (``at``: position -> value)."""
    if not n:
        return NO_VALUES
    lo, hi, p90 = order_positions(n)
    # statistics.median: the middle value, or the mean of the two middle values
    return n, (at[hi] if lo == hi else (at[lo] + at[hi]) / 2), at[p90]


def present(session: Session, as_of: datetime, workflows: Iterable[str]) -> set[str]:
    """The ``workflows`` with at least one record created by ``as_of``, in one statement
    (one index probe each, ix_records_kpi). Every cohort of a workflow's metric reads only
    that workflow's records created by the as-of time, so without one its cohort is empty."""
    keys = sorted(set(workflows))
    if not keys:
        return set()
    probes = [exists().where(Record.workflow_key == k, Record.created_at <= as_of).label(f"w{i}")
              for i, k in enumerate(keys)]
    row = session.execute(select(*probes)).one()
    return {k for k, there in zip(keys, row, strict=True) if there}


def _signature(c: Select) -> tuple[Any, ...]:
    """What identifies a cohort's rows: the cache key (structure and bound values) of a
    statement with its FROM and WHERE alone. A cohort grouped, distinct or limited at its
    top level is never shared (none is today)."""
    if (len(c._group_by_clauses) or len(c._having_criteria) or c._distinct
            or c._limit_clause is not None or c._offset_clause is not None):
        return (id(c),)
    # the statement with its rid column alone (a generative copy: with_only_columns would
    # keep the old columns beside the joins they were set up with)
    rows = c._generate()
    rows._raw_columns = [c._raw_columns[0]]
    key = rows._generate_cache_key()
    if key is None:  # not cacheable: never shared
        return (id(c),)
    return (key.key, repr([b.effective_value for b in key.bindparams]))


def _surface(froms: Iterable[Any]) -> set[Any]:
    out: set[Any] = set()
    for f in froms:
        out |= _surface([f.left, f.right]) if isinstance(f, Join) else {f._deannotate()}
    return out


def _froms(c: Select) -> list[Any]:
    return [*c.columns_clause_froms, *c._from_obj,
            *(f for crit in c._where_criteria for f in crit._from_objects),
            *(j[0] for j in c._setup_joins)]


def _onto(c: Select, leader: Select) -> tuple[Any, Any] | None:
    """``c``'s hit and value over ``leader``'s FROM: a subquery ``c`` built for itself is
    replaced by the leader's (the signatures, equal, say they are the same statement);
    None when they would read anything else."""
    mine, theirs = _froms(c), _froms(leader)
    if len(mine) != len(theirs):
        return None
    swap = {id(a): b for a, b in zip(mine, theirs, strict=True)
            if a is not b and isinstance(a, Subquery) and isinstance(b, Subquery)}

    def replace(e: Any) -> Any:
        t = getattr(e, "table", None)
        if isinstance(e, ColumnClause) and t is not None and id(t) in swap:
            return swap[id(t)].c[e.key]
        return None

    opts: dict[str, Any] = {}
    cols: list[Any] = [replacement_traverse(c.selected_columns[n].element, opts,
                                            cast(Any, replace))
                       for n in ("hit", "value")]
    surface = _surface(theirs)
    if not all(f._deannotate() in surface for col in cols for f in col._from_objects):
        return None
    return cols[0], cols[1]


#: kinds whose figure Python takes exactly from the cohort's rows (counts, sorted values);
#: a mean or a sum keeps SQL's own arithmetic
ROW_KINDS = ("count", "share", "median")


def aggregate(session: Session, cohorts: Mapping[str, Select],
              kinds: Mapping[str, str] | None = None) -> dict[str, Aggregates | Median]:
    """The aggregates of each cohort (a ``median`` in ``kinds``: its :data:`Median`);
    cohorts over the same rows share one statement: an aggregate one, or, with a median
    among them, one that returns the medians' order statistics with the counts (the means
    and sums then one of their own)."""
    kinds = kinds or {}
    groups: dict[tuple[Any, ...], list[str]] = {}
    for key, c in cohorts.items():
        groups.setdefault(_signature(c), []).append(key)
    out: dict[str, Aggregates | Median] = {}
    for keys in groups.values():
        by_rows = any(kinds.get(k) == "median" for k in keys)
        parts = ([[k for k in keys if kinds.get(k) in ROW_KINDS],
                  [k for k in keys if kinds.get(k) not in ROW_KINDS]] if by_rows
                 else [keys])
        for j, part in enumerate(parts):
            if not part:
                continue
            leader = cohorts[part[0]]
            members: list[tuple[str, Any, Any]] = []
            for k in part:
                cols = _onto(cohorts[k], leader) if k != part[0] else (
                    leader.selected_columns.hit.element, leader.selected_columns.value.element)
                if cols is None:
                    out.update(_together(session, cohorts[k], [(k, *_own(cohorts[k]))]))
                else:
                    members.append((k, *cols))
            if by_rows and j == 0:
                out.update(_rows(session, leader, members, kinds))
            else:
                out.update(_together(session, leader, members))
    return out


def _own(c: Select) -> tuple[Any, Any]:
    return c.selected_columns.hit.element, c.selected_columns.value.element


def _extended(leader: Select, members: list[tuple[str, Any, Any]]) -> Any:
    extra = []
    for i, (_k, hit, value) in enumerate(members[1:], 1):
        extra += [hit.label(f"hit_{i}"), value.label(f"value_{i}")]
    return (leader.add_columns(*extra) if extra else leader).subquery()


def _cols(sub: Any, i: int) -> tuple[Any, Any]:
    return (sub.c.hit, sub.c.value) if i == 0 else (sub.c[f"hit_{i}"], sub.c[f"value_{i}"])


def _together(session: Session, leader: Select, members: list[tuple[str, Any, Any]]
              ) -> dict[str, Aggregates]:
    sub = _extended(leader, members)
    aggs: list[Any] = [func.count()]
    for i in range(len(members)):
        hit, value = _cols(sub, i)
        aggs += [func.coalesce(func.sum(hit), 0), func.avg(value),
                 func.coalesce(func.sum(value), 0)]
    row = session.execute(select(*aggs).select_from(sub)).one()
    n = row[0]
    return {k: (n, row[1 + 3 * i], row[2 + 3 * i], row[3 + 3 * i])
            for i, (k, _h, _v) in enumerate(members)}


def _rows(session: Session, leader: Select, members: list[tuple[str, Any, Any]],
          kinds: Mapping[str, str]) -> dict[str, Aggregates | Median]:
    """Counts and hits (integers, as exact as counting the rows) and each median's order
    statistics, in one statement that returns at most three rows per median (one for a
    median without values): windows over the cohort's rows count them, sum the hits
    and number each median's values in order (NULLs last, on both databases)."""
    sub = _extended(leader, members)
    medians = [i for i, (k, _h, _v) in enumerate(members) if kinds.get(k) == "median"]
    cols: list[Any] = [func.count().over().label("n")]
    cols += [func.coalesce(func.sum(_cols(sub, i)[0]).over(), 0).label(f"h{i}")
             for i in range(len(members))]
    for i in medians:
        value = _cols(sub, i)[1]
        cols += [func.count(value).over().label(f"nv{i}"), value.label(f"v{i}"),
                 (func.row_number().over(order_by=(value.is_(None), value)) - 1
                  ).label(f"at{i}")]
    w = select(*cols).subquery()
    # each median's positions; a median without values: its first row, for the counts
    wanted = [or_(w.c[f"at{i}"].in_(order_positions(w.c[f"nv{i}"])),
                  and_(w.c[f"nv{i}"] == 0, w.c[f"at{i}"] == 0))
              for i in medians]
    rows = session.execute(select(w).where(or_(*wanted))).all()
    if not rows:  # no row in the cohort
        return {k: NO_VALUES if kinds.get(k) == "median" else EMPTY for k, _h, _v in members}
    first = rows[0]._mapping
    out: dict[str, Aggregates | Median] = {}
    for i, (k, _h, _v) in enumerate(members):
        if kinds.get(k) == "median":
            nv = int(first[f"nv{i}"])
            # the values before position nv are the non-NULL ones (NULLs sort last)
            at = {int(r._mapping[f"at{i}"]): float(r._mapping[f"v{i}"]) for r in rows
                  if r._mapping[f"at{i}"] < nv}
            out[k] = median_of(nv, at)
        else:  # count, share: the values are not used
            out[k] = (int(first["n"]), int(first[f"h{i}"]), None, 0)
    return out
