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
Medians need their values sorted and keep their own statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import Join

from workflow.db.models import Record

#: (rows, sum of hits, mean of values, sum of values) of one cohort
Aggregates = tuple[int, int, Any, Any]

#: the aggregates of an empty cohort (what the statement would return)
EMPTY: Aggregates = (0, 0, None, 0)


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


def _reads_only(c: Select, leader: Select) -> bool:
    """``c``'s hit and value read only tables in ``leader``'s FROM (its columns' and WHERE's
    tables and what it joins)."""
    froms = [*leader.columns_clause_froms, *leader._from_obj,
             *(f for crit in leader._where_criteria for f in crit._from_objects),
             *(j[0] for j in leader._setup_joins)]
    surface = _surface(froms)
    cols = (c.selected_columns.hit, c.selected_columns.value)
    return all(f._deannotate() in surface for col in cols for f in col._from_objects)


def aggregate(session: Session, cohorts: Mapping[str, Select]) -> dict[str, Aggregates]:
    """The aggregates of each cohort; cohorts over the same rows share one statement."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for key, c in cohorts.items():
        groups.setdefault(_signature(c), []).append(key)
    out: dict[str, Aggregates] = {}
    for keys in groups.values():
        leader = cohorts[keys[0]]
        members = [keys[0]] + [k for k in keys[1:] if _reads_only(cohorts[k], leader)]
        for k in keys:
            if k not in members:
                out.update(_together(session, cohorts[k], [(k, cohorts[k])]))
        out.update(_together(session, leader, [(k, cohorts[k]) for k in members]))
    return out


def _together(session: Session, leader: Select, members: list[tuple[str, Select]]
              ) -> dict[str, Aggregates]:
    extra = []
    for i, (_k, c) in enumerate(members[1:], 1):
        extra += [c.selected_columns.hit.element.label(f"hit_{i}"),
                  c.selected_columns.value.element.label(f"value_{i}")]
    sub = (leader.add_columns(*extra) if extra else leader).subquery()
    aggs: list[Any] = [func.count()]
    for i in range(len(members)):
        hit, value = (sub.c.hit, sub.c.value) if i == 0 else (sub.c[f"hit_{i}"],
                                                              sub.c[f"value_{i}"])
        aggs += [func.coalesce(func.sum(hit), 0), func.avg(value),
                 func.coalesce(func.sum(value), 0)]
    row = session.execute(select(*aggs).select_from(sub)).one()
    n = row[0]
    return {k: (n, row[1 + 3 * i], row[2 + 3 * i], row[3 + 3 * i])
            for i, (k, _c) in enumerate(members)}
