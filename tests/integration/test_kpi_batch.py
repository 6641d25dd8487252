"""The dashboard's metrics computed together (workflow/kpi/batch.py) are exactly the metrics
computed one by one from their cohorts (issue 18 item 5): every figure, on crafted data
sets, for viewers who see everything, part or nothing, for the current period and a past
as-of time; with fewer statements."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

import pytest
from sqlalchemy import Float, cast, literal, null, select, union_all

from tests.factories import statements
from tests.integration.test_kpi import (  # noqa: F401 - fixtures
    SPRING,
    capa_set,
    deviation_set,
    kpi,
    org,
)
from workflow.kpi import Period, batch

PAST = Period.months("2026-03", "2026-03")


def _one_by_one(k) -> dict:
    return {key: asdict(k.metric(key)) for key in k.specs()}


def _together(k) -> dict:
    return {key: asdict(m) for key, m in k.metrics().items()}


@pytest.mark.parametrize("data", ["capa_set", "deviation_set"])
@pytest.mark.parametrize("viewer", ["quinn", "olga", "otto"])
@pytest.mark.parametrize("period", [SPRING, PAST], ids=["spring", "march"])
def test_metrics_together_equal_each_metric_alone(engine, org, request, data, viewer,  # noqa: F811
                                                  period):
    """R-PERF-70, R-PERF-71: Kpi.metrics() gives, for every built-in and declared metric,
    exactly the Metric that Kpi.metric() computes from that metric's cohort alone (value,
    numerator, denominator, p90, status, groups, note)."""
    request.getfixturevalue(data)
    k = kpi(engine, viewer, period)
    alone = _one_by_one(k)
    together = _together(kpi(engine, viewer, period))
    assert together == alone
    if viewer == "quinn" and period is SPRING:  # the data set counts something
        assert any(m["value"] for m in together.values())


def test_cohorts_over_the_same_rows_share_one_statement(engine, capa_set):  # noqa: F811
    """R-PERF-70: open CAPAs counted, flagged overdue and aged are one statement over the
    open CAPAs (besides the one that finds which workflows have records); effectiveness
    checks passed and taken early one over the checks."""
    k = kpi(engine, "quinn")
    k.metrics()  # the definitions and the viewer's roles, read once per calculator
    with statements(engine) as seen:
        k.metrics(["capa.open", "capa.overdue", "capa.age"])
    assert len(seen) == 2, [s for s, _ in seen]
    with statements(engine) as seen:
        k.metrics(["capa.effectiveness", "capa.effectiveness_early"])
    assert len(seen) == 2, [s for s, _ in seen]
    with statements(engine) as seen:  # other rows: two statements
        k.metrics(["capa.open", "capa.closure_days"])
    assert len(seen) == 3
    with statements(engine) as seen:  # a median reads the rows it shares with a share
        k.metrics(["capa.closure_days", "capa.extended"])
    assert len(seen) == 2, [s for s, _ in seen]


def test_a_milestone_is_read_once_for_its_metrics(engine, deviation_set):  # noqa: F811
    """R-PERF-72: the built-in median days to triage and the declared share of triages
    within two days read the deviations' triage milestone in one statement."""
    k = kpi(engine, "quinn")
    k.metrics()
    with statements(engine) as seen:
        ms = k.metrics(["dev.triage_days", "deviation.triaged_in_time"])
    assert len(seen) == 2, [s for s, _ in seen]
    assert ms["dev.triage_days"].value == k.metric("dev.triage_days").value == 2.0
    assert ms["deviation.triaged_in_time"].denominator == 2


def test_a_workflow_without_records_costs_no_statement(engine, capa_set):  # noqa: F811
    """R-PERF-71: the metrics of workflows without a record by the as-of time (here every
    declared one: the data set has CAPAs only) are computed without a statement of their
    own; one statement finds which workflows have records."""
    k = kpi(engine, "quinn")
    k.metrics()  # the definitions and the viewer's roles, read once per calculator
    declared = [key for key in k.specs() if "." in key and key.split(".")[0] not in
                ("capa", "dev", "cr", "trn", "ar", "sec")]
    assert declared
    with statements(engine) as seen:
        ms = k.metrics(declared)
    assert len(seen) == 1, [s for s, _ in seen]
    assert all(m.value in (None, 0) and m.note == "nothing in the period" or m.value == 0
               for m in ms.values())


def test_a_count_by_counts_its_groups(engine, deviation_set):  # noqa: F811
    """R-PERF-70: a count_by KPI's number is the sum of its groups, read in one statement
    with them (not a second read of the same records' data)."""
    k = kpi(engine, "quinn")
    k.metrics()
    with statements(engine) as seen:
        m = k.metrics(["deviation.by_classification"])["deviation.by_classification"]
    assert len(seen) == 2, [s for s, _ in seen]
    assert m.value == sum(m.groups.values()) == k.metric("deviation.by_classification").value


def test_training_compliance_and_its_documents_read_once(engine, capa_set):  # noqa: F811
    """R-PERF-73: the training compliance figure is the sum of the per-document table the
    dashboard shows beside it, read once by the calculator (one read session, as of its
    as-of time): the same numbers, one statement for both."""
    k = kpi(engine, "quinn")
    alone = k.metric("trn.compliance")
    k2 = kpi(engine, "quinn")
    k2.specs()
    k2.scope.sees_all_of("training_assignment")  # the definitions and roles, read once
    with statements(engine) as seen:
        m = k2.metrics(["trn.compliance"])["trn.compliance"]
        docs = k2.training_by_document()
    assert len(seen) == 2, [s for s, _ in seen]
    assert alone.denominator and (m.numerator, m.denominator, m.value) == \
        (alone.numerator, alone.denominator, alone.value)
    assert docs == kpi(engine, "quinn").training_by_document()
    assert sum(n for _d, _h, n in docs) == m.denominator


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 9, 10, 11, 20, 37])
def test_a_median_is_three_rows_sorted_by_the_database(engine, n):
    """R-PERF-74: a median metric's figures come from the values the database sorts, at
    most three rows a median (the middle one or two and the 90th percentile) with the
    share's counts beside them, whatever the cohort's size; they equal statistics.median
    and values[int(0.9 n)] over every value, NULLs left out, even and odd counts."""
    values = [round((i * 7919) % 101 / 3.0, 4) for i in range(n)]
    rows = [(i, i % 3 == 0, v) for i, v in enumerate(values)] + [(n + 1, True, None),
                                                                  (n + 2, False, None)]
    cohort = union_all(*[select(literal(i).label("rid"), literal(int(h)).label("hit"),
                                cast(literal(v) if v is not None else null(), Float()
                                     ).label("value")) for i, h, v in rows]).subquery()
    rows_of = select(cohort.c.rid.label("rid"), (cohort.c.hit + 0).label("hit"),
                     (cohort.c.value + 0).label("value"))
    fetched: list[int] = []
    with engine.reader() as s:
        got = batch.aggregate(s, {"m": rows_of, "c": rows_of}, {"m": "median", "c": "share"})
        execute = s.execute

        def spy(*a: Any, **kw: Any) -> Any:  # the rows each statement hands the application
            frozen = execute(*a, **kw).freeze()
            fetched.append(len(frozen().all()))
            return frozen()

        s.execute = spy  # type: ignore[method-assign]
        assert batch.aggregate(s, {"m": rows_of}, {"m": "median"})["m"] == got["m"]
    ordered = sorted(values)
    assert got["c"] == (n + 2, sum(1 for _i, h, _v in rows if h), None, 0)
    if n:
        assert got["m"] == (n, statistics.median(ordered), ordered[min(n - 1, int(0.9 * n))])
    else:
        assert got["m"] == (0, None, None)
    assert len(fetched) == 1 and 1 <= fetched[0] <= 3  # not the n + 2 rows of the cohort
