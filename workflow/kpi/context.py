"""What a KPI cohort is computed against: one viewer, period and as-of time in a read session,
and the conditions every cohort is built from (visible, closed, void, open, in the period,
milestones).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Select, and_, case, cast, exists, false, func, literal, null, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from workflow.db.models import AuditEvent, DefinitionVersion, Record, RoleGrant, User
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.kpi.periods import Period
from workflow.kpi.specs import DONE, VOID
from workflow.kpi.sql import field_time
from workflow.registry import Registry
from workflow.rules import active_grant_clause, sees_workflow, visible_clause
from workflow.spec.model import TrainingCapability, WorkflowDefinition


@dataclass
class Scope:
    """The slice of data a viewer's KPIs read.

    Args:
        session: a read session (``Engine.reader()``).
        registry: the engine's definition registry.
        user: the viewer; only records this person may see count.
        period: the period.
        as_of: the as-of time (the caller takes min(now, period end)).
        policy: the second-factor policy for sec.totp_enrolled; None: from env when needed.
    """

    session: Session
    registry: Registry
    user: User
    period: Period
    as_of: datetime
    policy: Policy | None = None
    _defs: dict[str, list[WorkflowDefinition]] = field(default_factory=dict, init=False, repr=False)
    _visible: ColumnElement[bool] | None = field(default=None, init=False, repr=False)
    _roles: set[str] | None = field(default=None, init=False, repr=False)
    _sees_all: dict[str, bool] = field(default_factory=dict, init=False, repr=False)

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    def totp_policy(self) -> Policy:
        if self.policy is None:
            self.policy = Policy.from_settings()
        return self.policy

    def definitions(self, workflow: str) -> list[WorkflowDefinition]:
        """Every published version of ``workflow`` (records stay on the version they began)."""
        if workflow not in self._defs:
            hashes = self.session.execute(
                select(DefinitionVersion.content_hash).where(DefinitionVersion.key == workflow)
                .order_by(DefinitionVersion.version)).scalars().all()
            self._defs[workflow] = [self.registry.by_hash(self.session, h).definition
                                    for h in hashes]
        return self._defs[workflow]

    def training(self, workflow: str) -> TrainingCapability | None:
        """The fields naming trainee and document in ``workflow``'s training records (its
        newest version's ``training`` capability); None when it declares none (its training
        metrics then count nothing)."""
        defs = self.definitions(workflow)
        return defs[-1].capabilities.training if defs else None

    def all_definitions(self) -> Iterator[WorkflowDefinition]:
        """Every published version of every workflow (lazily: read when iterated)."""
        keys = self.session.execute(select(DefinitionVersion.key).distinct()).scalars()
        for k in keys:
            yield from self.definitions(k)

    # ------------------------------------------------------------------ conditions

    def roles(self) -> set[str]:
        if self._roles is None:
            user = self.user
            self._roles = set() if user.is_system else identity.roles_of(self.session, user)
        return self._roles

    def visible(self) -> ColumnElement[bool]:
        """The records the viewer may see (:func:`workflow.rules.visible_clause`)."""
        if self._visible is None:
            self._visible = visible_clause(self.user, self.roles(), self.all_definitions())
        return self._visible

    def sees_all_of(self, workflow: str) -> bool:
        """The viewer sees every record of ``workflow``: the system account, or a role of
        every published version (a record runs on one of them, so the visibility rule holds
        for each of its records; the cohorts then leave the clause out, R-PERF-40)."""
        if workflow not in self._sees_all:
            defs = self.definitions(workflow)
            self._sees_all[workflow] = self.user.is_system or bool(defs) and all(
                sees_workflow(d, self.roles()) for d in defs)
        return self._sees_all[workflow]

    def base(self, workflow: str | None) -> list[ColumnElement[bool]]:
        """Visible records of ``workflow`` created by the as-of time."""
        conds = [Record.workflow_key == workflow, Record.created_at <= self.as_of]
        if workflow is None or not self.sees_all_of(workflow):
            conds.append(self.visible())
        return conds

    def closed_done(self) -> ColumnElement[bool]:
        return and_(Record.outcome == DONE, Record.closed_at <= self.as_of)

    def void(self) -> ColumnElement[bool]:
        # null-safe (it is negated): a record without an outcome is not void
        return and_(func.coalesce(Record.outcome, "") == VOID,
                    func.coalesce(Record.closed_at <= self.as_of, False))

    def still_open(self) -> ColumnElement[bool]:
        return or_(Record.closed_at.is_(None), Record.closed_at > self.as_of)

    def in_period(self, col: Any) -> ColumnElement[bool]:
        return and_(col >= self.period.start, col < self.period.end, col <= self.as_of)

    def has_role(self, roles: Sequence[str] | None = None) -> ColumnElement[bool]:
        """``users`` holds an active grant at the as-of time (of one of ``roles`` if given)."""
        g = RoleGrant
        conds = [g.user_id == User.id, active_grant_clause(self.as_of)]
        if roles is not None:
            conds.append(g.role.in_(list(roles)) if roles else false())
        return exists().where(*conds)

    # ------------------------------------------------------------------ definitions

    def due_date_field(self, workflow: str) -> str | None:
        """For workflows without a record due date: the due_field of the initial state."""
        defs = self.definitions(workflow)
        if not defs:
            return None
        d = defs[-1]
        return d.states[d.initial_state].due_field

    def revocation_items(self, workflow: str | None) -> str | None:
        """The list field a ``revoke_grants`` action reads (declared by the definition)."""
        for d in reversed(self.definitions(workflow or "")):
            for s in d.states.values():
                for a in s.on_enter:
                    if a.kind == "revoke_grants":
                        return str(a.params["items"])
        return None

    def milestone(self, workflow: str, name: str) -> Select | None:
        """(rid, started, stopped) per visible record: the first entry into the milestone's
        start state and the last entry into its stop state, per definition version."""
        pairs = [(d.content_hash, d.milestones[name]) for d in self.definitions(workflow)
                 if name in d.milestones]
        if not pairs:
            return None
        ev = AuditEvent
        start = or_(*[and_(Record.definition_hash == h, ev.to_state == m.start) for h, m in pairs
                      if not m.start_field], false())
        stop = or_(*[and_(Record.definition_hash == h, ev.to_state == m.stop) for h, m in pairs])
        states = sorted({m.start for _, m in pairs} | {m.stop for _, m in pairs})
        stops = sorted({m.stop for _, m in pairs})
        # only records that entered a stop state in the period can count (the cohort keeps
        # those whose LAST stop entry is in it): found by ix_audit_events_to_state, so the
        # query reads the events of the period's finishers, not of every record
        e2 = AuditEvent.__table__.alias("e2")
        finished = Record.id.in_(select(e2.c.record_id).where(
            e2.c.to_state.in_(stops), e2.c.at >= self.period.start, e2.c.at < self.period.end,
            e2.c.at <= self.as_of, e2.c.record_id.is_not(None)))
        started: Any = func.min(case((start, ev.at)))
        by_field = [(h, m.start_field) for h, m in pairs if m.start_field]
        if by_field:
            # a milestone from a field (start_field: when an incident occurred) starts at the
            # time that field holds
            started = case(*[(Record.definition_hash == h, func.max(field_time(Record.data, f)))
                             for h, f in by_field], else_=started)
        # only create and transition events carry to_state (workflow/engine/core.py)
        return (select(Record.id.label("rid"),
                       started.label("started"),
                       func.max(case((stop, ev.at))).label("stopped"))
                .join(ev, ev.record_id == Record.id)
                .where(*self.base(workflow), finished, ev.to_state.in_(states),
                       ev.at <= self.as_of)
                .group_by(Record.id))

    # ------------------------------------------------------------------ cohort rows

    def rows(self, workflow: str | None, conds: Sequence[Any], hit: Any, value: Any) -> Select:
        """SELECT rid, hit, value over the visible records of ``workflow`` matching ``conds``."""
        return select(Record.id.label("rid"), hit.label("hit"),
                      (value if value is not None else cast(null(), Float())).label("value")).where(
            *self.base(workflow), *conds)


def empty_cohort(value: Any = None) -> Select:
    """A cohort with no rows (a metric whose definitions declare nothing to count)."""
    return select(literal(0).label("rid"), literal(1).label("hit"),
                  (value if value is not None else cast(null(), Float())).label("value")
                  ).where(false())
