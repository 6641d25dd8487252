"""Quality KPIs computed with SQL aggregates (docs/kpis.md defines each one).

Every metric is a *cohort*: one SELECT of record ids (or audit event ids) with a ``hit`` flag
(counted in the numerator) and a ``value`` (days, items). The number on the dashboard is an
aggregate over that cohort and the drill-down lists the same cohort, so a number and the
records behind it cannot disagree.

Rules kept here, never in the web layer:
- only records the viewer may see count (the engine's rule: a role of the record's workflow
  version, or the initiator, or someone who was assigned a task on it);
- closed = a final state whose outcome is ``done``; ``void`` (cancelled, rejected,
  withdrawn) is excluded from rates unless a metric says otherwise;
- cycle times use the milestones the definitions declare (``milestones:``), never state
  names; due dates come from the record (``due_original`` / ``due_current``) or, for a
  workflow without a record due date, from the ``due_field`` its initial state declares;
- time base: UTC; a period is ``[start, end)``; "as of" is min(now, end).

No Flask here: the dashboard (webapp/dashboard.py), the CLI and a scheduled report all call
:class:`Kpi`.

Modules: ``specs`` (what each metric is, thresholds), ``periods``, ``sql`` (portable SQL and
the rules as SQL), ``context`` (the viewer's scope and the conditions cohorts are built from),
``cohorts`` (one function per metric), ``calculator`` (:class:`Kpi`), ``report``.
"""


from workflow.kpi.calculator import DrillRow, EventRow, Kpi, Metric
from workflow.kpi.periods import Period, add_months, month_start
from workflow.kpi.report import render_report, report_rows, snapshot
from workflow.kpi.specs import (
    DEFAULT_THRESHOLDS,
    SECURITY_ACTIONS,
    SPECS,
    USER_METRICS,
    Spec,
    load_thresholds,
    rate,
)
from workflow.kpi.sql import days_between, month_of

__all__ = ["DEFAULT_THRESHOLDS", "SECURITY_ACTIONS", "SPECS", "USER_METRICS", "DrillRow",
           "EventRow", "Kpi", "Metric", "Period", "Spec", "add_months", "days_between",
           "load_thresholds", "month_of", "month_start", "rate", "render_report", "report_rows",
           "snapshot"]
