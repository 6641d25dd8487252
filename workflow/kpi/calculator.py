"""The KPI calculator: a metric's number and its drill-down from the same cohort
(:mod:`workflow.kpi.cohorts`), and the monthly series the dashboard charts.

No Flask here: the dashboard (webapp/dashboard.py), the CLI and a scheduled report all call
:class:`Kpi`.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, and_, func, literal, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql import expression

from workflow import clock
from workflow.audit.integrity import VERIFY_JOB
from workflow.db.models import AuditEvent, DefinitionVersion, JobRun, Record, RoleGrant, User
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.kpi import batch
from workflow.kpi import declared as declared_kpis
from workflow.kpi.cohorts import COHORTS
from workflow.kpi.context import Scope
from workflow.kpi.periods import Period
from workflow.kpi.specs import SECURITY_ACTIONS, SPECS, USER_METRICS, Spec, load_thresholds, rate
from workflow.kpi.sql import month_of
from workflow.registry import Registry
from workflow.rules import active_grant_clause, document_of, sees_workflow, trainee_of


@dataclass
class Metric:
    key: str
    label: str
    show: str
    value: float | None
    numerator: int | None = None
    denominator: int | None = None
    p90: float | None = None
    status: str | None = None
    note: str = ""
    #: count_by (declared KPIs): records per value of the grouped field
    groups: dict[str, int] | None = None

    @property
    def display(self) -> str:
        if self.value is None:
            return "–"
        if self.show == "percent":
            return f"{self.value * 100:.0f} %"
        if self.show == "days":
            return f"{self.value:.1f} d"
        return f"{self.value:g}"


@dataclass
class DrillRow:
    id: int
    number: str
    title: str
    workflow: str
    state: str
    state_label: str
    created_at: datetime
    due: Any
    closed_at: datetime | None
    counted: bool
    value: float | None


@dataclass
class EventRow:
    id: int
    at: datetime
    actor: str
    action: str
    username: str
    detail: str


@dataclass
class Kpi:
    """KPIs for one viewer, period and optional workflow filter.

    Args:
        session: a read session (``Engine.reader()``).
        registry: the engine's definition registry.
        viewer: username; only records this person may see count.
        period: the period; defaults to the last 12 months.
        as_of: defaults to min(now, period end).
    """

    session: Session
    registry: Registry
    viewer: str
    period: Period = field(default_factory=Period.last_months)
    as_of: datetime | None = None
    thresholds: dict[str, dict[str, Any]] = field(default_factory=load_thresholds)
    #: the second-factor policy (``auth.Policy``) for sec.totp_enrolled; default: from env
    policy: Policy | None = None

    def __post_init__(self) -> None:
        if self.as_of is None:
            self.as_of = min(clock.now(), self.period.end)
        self.user = identity.get_user(self.session, self.viewer, active=False)
        self._declared: dict[str, declared_kpis.Declared] | None = None
        self._by_document: list[tuple[str, int, int]] | None = None
        #: what every cohort reads: the viewer's visible records, the period, the as-of time
        self.scope = Scope(self.session, self.registry, self.user, self.period, self.as_of,
                           self.policy)
        if self.scope.dialect == "postgresql":
            # the KPI aggregates are estimated expensive enough for PostgreSQL's JIT, whose
            # compilation (~25 ms a query) costs more than the queries themselves
            # (bench/kpi.py); SET LOCAL: this read transaction only
            self.session.execute(expression.text("SET LOCAL jit = off"))

    # ------------------------------------------------------------------ catalogue

    def declared(self) -> dict[str, declared_kpis.Declared]:
        """The KPIs the workflows declare (``kpis:`` of each workflow's newest published
        version), by metric key ``<workflow>.<name>``."""
        if self._declared is None:
            self._declared = {}
            keys = self.session.execute(select(DefinitionVersion.key).distinct()
                                        .order_by(DefinitionVersion.key)).scalars().all()
            for wf in keys:
                defs = self.scope.definitions(wf)
                for x in declared_kpis.declared_of(defs[-1], SPECS) if defs else ():
                    self._declared[x.spec.key] = x
        return self._declared

    def spec(self, key: str) -> Spec:
        """A metric's spec, built-in or declared (KeyError: no such metric)."""
        return SPECS[key] if key in SPECS else self.declared()[key].spec

    def specs(self) -> dict[str, Spec]:
        """Every metric's spec: the built-in ones, then the declared ones."""
        return {**SPECS, **{k: x.spec for k, x in self.declared().items()}}

    def threshold(self, key: str) -> dict[str, Any] | None:
        """green / amber of a metric: QMS_KPI_THRESHOLDS, over a declared KPI's own
        ``threshold:``, over the built-in defaults."""
        x = self.declared().get(key) if key not in SPECS else None
        own = dict(x.kpi.threshold) if x is not None and x.kpi.threshold else {}
        merged = {**own, **self.thresholds.get(key, {})}
        return merged or None

    def declared_sections(self) -> list[tuple[str, str, list[str]]]:
        """(workflow, title, metric keys) per workflow declaring KPIs that the viewer may
        see records of (holds a role of one of its versions; the system account sees all)."""
        user = self.user
        roles = set() if user.is_system else identity.roles_of(self.session, user)
        out: dict[str, tuple[str, str, list[str]]] = {}
        for key, x in self.declared().items():
            wf = x.definition.key
            if wf not in out:
                if not (user.is_system or any(sees_workflow(d, roles)
                                              for d in self.scope.definitions(wf))):
                    continue
                out[wf] = (wf, x.definition.title, [])
            out[wf][2].append(key)
        return list(out.values())

    def cohort(self, key: str, **params: str) -> Select:
        """The metric's cohort: SELECT rid, hit, value (one row per record or event)."""
        if key in SPECS:
            return COHORTS[key](self.scope, SPECS[key], params)
        return declared_kpis.cohort(self.scope, self.declared()[key], params)

    # ------------------------------------------------------------------ metrics

    def metric(self, key: str) -> Metric:
        return self._metric(key, None)

    def _metric(self, key: str, data: batch.Aggregates | batch.Median | None,
                groups: dict[str, int] | None = None) -> Metric:
        """The metric ``key`` from its cohort's aggregates (a median: its
        :data:`~workflow.kpi.batch.Median`), computed here when ``data`` is None; a
        count_by's ``groups`` likewise."""
        spec = self.spec(key)
        m = Metric(key, spec.label, spec.show, None)
        x = self.declared().get(key) if key not in SPECS else None
        if spec.kind == "median":
            if data is None:  # alone: every value, in Python (what metrics() must equal)
                c = self.cohort(key).subquery()
                values = [float(v) for v in self.session.execute(
                    select(c.c.value).order_by(c.c.value)).scalars() if v is not None]
                data = (len(values), statistics.median(values) if values else None,
                        values[min(len(values) - 1, int(0.9 * len(values)))] if values
                        else None)
            n, median, p90 = cast(batch.Median, data)
            m.numerator = m.denominator = n
            if n:
                m.value, m.p90 = median, p90
        else:
            if data is None:
                data = batch.aggregate(self.session, {key: self.cohort(key)})[key]
            n, hits, avg, total = cast(batch.Aggregates, data)
            if spec.kind == "count":
                m.value = m.numerator = int(n)
            elif spec.kind == "share":
                m.numerator, m.denominator = int(hits), int(n)
                m.value = (hits / n) if n else None
                if spec.show == "count":
                    m.value = int(hits)
            elif spec.kind == "mean":
                m.denominator = int(n)
                if spec.num_label:
                    m.numerator = int(hits)
                m.value = float(avg) if avg is not None else None
            elif spec.kind == "sum":
                m.numerator, m.denominator = int(total), int(n)
                m.value = int(total)
        status_value = m.value
        if spec.kind == "share" and spec.show == "count":
            status_value = ((m.numerator or 0) / m.denominator) if m.denominator else None
        m.status = rate(status_value, self.threshold(key))
        if x is not None and x.kpi.kind == "count_by":
            m.groups = groups if groups is not None else \
                declared_kpis.groups(self.scope, x, self.cohort(key)) if m.value else \
                declared_kpis.ordered_groups(x, {})
        if m.value is None:
            m.note = "nothing in the period"
        return m

    def metrics(self, keys: Iterable[str] | None = None) -> dict[str, Metric]:
        """The metrics ``keys`` (default: every built-in and declared one), each the figure
        :meth:`metric` gives, with fewer statements: cohorts over the same rows are
        aggregated together and a workflow without a record by the as-of time reads
        nothing (:mod:`workflow.kpi.batch`, R-PERF-70, R-PERF-71)."""
        keys = list(keys or self.specs())
        specs = {k: self.spec(k) for k in keys}
        assert self.as_of is not None
        there = batch.present(self.session, self.as_of,
                              {s.workflow for s in specs.values() if s.workflow})
        data: dict[str, batch.Aggregates | batch.Median | None] = {}
        groups: dict[str, dict[str, int]] = {}
        shared = {}
        for k, spec in specs.items():
            x = self.declared().get(k) if k not in SPECS else None
            if spec.workflow and spec.workflow not in there:
                data[k] = batch.NO_VALUES if spec.kind == "median" else batch.EMPTY
            elif k == "trn.compliance":
                # the per-document table partitions the same cohort (integers: exact);
                # the page shows it too, so it is read once per calculator
                docs = self.training_by_document()
                data[k] = (sum(n for _d, _h, n in docs), sum(h for _d, h, _n in docs), None, 0)
            elif x is not None and x.kpi.kind == "count_by":
                # the groups partition the cohort (a row each, hit 1, no value): its count
                # is theirs, one statement for both
                groups[k] = declared_kpis.groups(self.scope, x, self.cohort(k))
                n = sum(groups[k].values())
                data[k] = (n, n, None, 0)
            else:
                shared[k] = self.cohort(k)
        data.update(batch.aggregate(self.session, shared, {k: specs[k].kind for k in shared}))
        return {k: self._metric(k, data.get(k), groups.get(k)) for k in keys}

    # ------------------------------------------------------------------ drill-down

    def drill(self, key: str, part: str = "all", **params: str) -> list[DrillRow] | list[EventRow]:
        """The records (or events) behind a metric: ``part`` num = counted in the numerator,
        all = the whole cohort (the denominator)."""
        c = self.cohort(key, **params).subquery()
        if key in USER_METRICS:
            q = select(User, c.c.hit).join(c, c.c.rid == User.id)
            if part == "num":
                q = q.where(c.c.hit == 1)
            label = self.spec(key).num_label
            return [EventRow(u.id, u.totp_enabled_at or u.created_at, u.full_name,
                             label if hit else "", u.username, "counted" if hit else "")
                    for u, hit in self.session.execute(q.order_by(User.username)).all()]
        if key in SECURITY_ACTIONS:
            rows = self.session.execute(
                select(AuditEvent).join(c, c.c.rid == AuditEvent.id).order_by(AuditEvent.at)
            ).scalars().all()
            return [EventRow(e.id, e.at, e.actor_name, e.action, str(e.changes.get("username", "")),
                             str(e.changes.get("detail", ""))) for e in rows]
        q = select(Record, c.c.hit, c.c.value).join(c, c.c.rid == Record.id)
        if part == "num":
            q = q.where(c.c.hit == 1)
        out = []
        for rec, hit, value in self.session.execute(q.order_by(Record.number)).all():
            d = self.registry.by_hash(self.session, rec.definition_hash).definition
            due = rec.due_current
            field_ = None if due else d.states[d.initial_state].due_field
            if field_:
                due = rec.data.get(field_)
            out.append(DrillRow(rec.id, rec.number, rec.title, rec.workflow_key, rec.state,
                                d.states[rec.state].label, rec.created_at, due, rec.closed_at,
                                bool(hit), float(value) if value is not None else None))
        return out

    # ------------------------------------------------------------------ monthly series

    def deviations_by_class(self) -> dict[str, dict[str, int]]:
        """month -> classification -> count (created in the period; 'unclassified' before
        triage)."""
        cls = func.coalesce(Record.data["classification"].as_string(), "unclassified")
        # the cohort's own rows carry month and class: one read of records (R-PERF-43)
        c = self.cohort("dev.created").add_columns(
            month_of(Record.created_at).label("m"), cls.label("cls")).subquery()
        rows = self.session.execute(
            select(c.c.m, c.c.cls, func.count()).group_by(c.c.m, c.c.cls)).all()
        out: dict[str, dict[str, int]] = {m: {} for m in self.period.month_keys()}
        for m, k, n in rows:
            out.setdefault(m, {})[k] = int(n)
        return out

    def flow(self, workflow: str) -> dict[str, dict[str, int]]:
        """month -> {opened, closed}: records created / closed with outcome done per month."""
        s = self.scope
        vis = s.base(workflow)
        opened = select(month_of(Record.created_at).label("m"), literal("opened").label("k")
                        ).where(*vis, s.in_period(Record.created_at))
        closed = select(month_of(Record.closed_at).label("m"), literal("closed").label("k")
                        ).where(*vis, s.closed_done(), s.in_period(Record.closed_at))
        u = union_all(opened, closed).subquery()
        out = {m: {"opened": 0, "closed": 0} for m in self.period.month_keys()}
        for m, k, n in self.session.execute(select(u.c.m, u.c.k, func.count())
                                            .group_by(u.c.m, u.c.k)).all():
            out.setdefault(m, {"opened": 0, "closed": 0})[k] = int(n)
        return out

    def security_by_month(self) -> dict[str, dict[str, int]]:
        ev = AuditEvent
        month = month_of(ev.at)
        rows = self.session.execute(
            select(month, ev.action, func.count()).where(
                ev.record_id.is_(None), ev.action.in_(list(SECURITY_ACTIONS.values())),
                self.scope.in_period(ev.at)).group_by(month, ev.action)).all()
        out = {m: {a: 0 for a in SECURITY_ACTIONS.values()} for m in self.period.month_keys()}
        for m, a, n in rows:
            out.setdefault(m, {})[a] = int(n)
        return out

    def training_by_document(self) -> list[tuple[str, int, int]]:
        """(document, completed, due) per document, same cohort as trn.compliance; read
        once per calculator (one read session, as of :attr:`as_of`), which also gives
        trn.compliance in :meth:`metrics` (R-PERF-73)."""
        if self._by_document is not None:
            return list(self._by_document)
        cap = self.scope.training(SPECS["trn.compliance"].workflow or "")
        if cap is None:
            return []
        c = self.cohort("trn.compliance").add_columns(document_of(cap).label("doc")).subquery()
        self._by_document = [(str(d), int(h), int(n)) for d, h, n in self.session.execute(
            select(c.c.doc, func.sum(c.c.hit), func.count())
            .group_by(c.c.doc).order_by(c.c.doc)).all()]
        return list(self._by_document)

    def training_by_role(self) -> list[tuple[str, int, int]]:
        """(role, completed, due) per role the trainee holds at the as-of time, same cohort
        as trn.compliance (an assignment counts once in each of its trainee's roles)."""
        g = RoleGrant
        cap = self.scope.training(SPECS["trn.compliance"].workflow or "")
        if cap is None:
            return []
        c = self.cohort("trn.compliance").add_columns(
            func.lower(trainee_of(cap)).label("trainee")).subquery()
        return [(str(r), int(h), int(n)) for r, h, n in self.session.execute(
            select(g.role, func.sum(c.c.hit), func.count())
            .select_from(c)
            .join(User, func.lower(User.username) == c.c.trainee)
            .join(g, and_(g.user_id == User.id, active_grant_clause(self.scope.as_of)))
            .group_by(g.role).order_by(g.role)).all()]

    # ------------------------------------------------------------------ integrity

    def last_verification(self) -> JobRun | None:
        """The newest finished verification run (never runs one; a queued or running one
        is not a result)."""
        return self.session.execute(
            select(JobRun).where(JobRun.job == VERIFY_JOB,
                                 JobRun.status.in_(("done", "failed"))).order_by(JobRun.started_at.desc(),
                                                                    JobRun.id.desc()).limit(1)
        ).scalar_one_or_none()
