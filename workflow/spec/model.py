"""Workflow definitions as frozen dataclasses: pure data, no YAML and no database.

:mod:`workflow.spec.load` builds them from validated YAML (:func:`~workflow.spec.load.load_text`);
the engine, the registry and the KPI code read them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from workflow.spec import expressions

#: Pseudo-roles usable in ``roles:`` lists without being declared.
PSEUDO_ROLES = frozenset({"initiator", "assignee"})
#: Names every guard and copy expression may use besides the workflow's fields.
BUILTIN_NAMES = frozenset({"now", "today", "item", "user", "initiator", "actor", "number",
                           "actor_roles"})

_DURATION = re.compile(r"^([1-9][0-9]*)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``"90d"`` -> ``timedelta(days=90)``; units m, h, d, w."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 12h, 90d, 2w)")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    label: str
    help: str = ""
    choices: tuple[str, ...] = ()
    workflow: str | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    default: Any = None
    item: FieldSpec | None = None
    fields: tuple[FieldSpec, ...] = ()
    link: str | None = None  # reference fields: also record a link of this kind
    # list fields (workflow/spec/content.py): a generated population, the columns a step may
    # still change in it, the user column naming whom a row is about, CSV import in the form
    generated: bool = False
    editable: tuple[str, ...] = ()
    subject: str | None = None
    csv_import: bool = False
    # list columns: a value the engine computes from the row (and the record's fields) with
    # the safe expression library on every change; never taken from input, shown read-only
    computed: str | None = None


@dataclass(frozen=True)
class Action:
    kind: str  # create_record | set_due | start_timer | notify | revoke_grants | publish_draft
    #          | fire_on_matching
    params: Mapping[str, Any]
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class TrainingRequirement:
    """Current training needed (Part 11 §11.10(i)): a completed training_assignment for the
    document (and version, when given) whose trainee is the actor."""

    document: str
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.document} version {self.version}" if self.version else self.document


@dataclass(frozen=True)
class StateSpec:
    name: str
    label: str
    initial: bool = False
    final: bool = False
    outcome: str | None = None  # for final states: "done" or "void"
    owners: tuple[str, ...] = ()  # roles (or initiator) owning a task each in this state
    assignee_field: str | None = None
    due_in: timedelta | None = None
    due_field: str | None = None
    on_enter: tuple[Action, ...] = ()
    training: tuple[TrainingRequirement, ...] = ()  # for anyone acting in this state


@dataclass(frozen=True)
class Guard:
    when: str
    message: str


@dataclass(frozen=True)
class SignatureSpec:
    meaning: str
    roles: tuple[str, ...]
    quorum: int = 1
    one_per_role: bool = False
    #: roles whose signature is needed only when a guard expression holds on the record as
    #: signed (``roles_when: {qa: gxp_data_affected}``, with one_per_role): (role, expression)
    roles_when: tuple[tuple[str, str], ...] = ()

    def required(self, names: Mapping[str, Any]) -> SignatureSpec:
        """The gate as it applies to a record whose values are ``names``: a role of
        ``roles_when`` signs only when its expression holds (e.g. QA signs an incident's
        review too when GxP data was affected); the quorum is one signer per remaining role.
        An expression that cannot be evaluated keeps its role required (fails closed)."""
        if not self.roles_when:
            return self
        skip = set()
        for role, when in self.roles_when:
            try:
                if not expressions.evaluate(when, names):
                    skip.add(role)
            except expressions.ExpressionError:
                pass
        roles = tuple(r for r in self.roles if r not in skip)
        return SignatureSpec(meaning=self.meaning, roles=roles, quorum=len(roles),
                             one_per_role=self.one_per_role)


@dataclass(frozen=True)
class AreaRule:
    """``separation: not_in_area``: nobody whose department (users.department, set by an
    administrator) is the area ``field`` names may do the step - neither the actor nor a
    person the user fields ``named_in`` name (e.g. an auditor does not audit their own
    area). Compared trimmed and case-insensitively; an empty area holds nobody back."""

    field: str
    named_in: tuple[str, ...] = ()


@dataclass(frozen=True)
class Separation:
    not_initiator: bool = False
    not_actor_of: tuple[str, ...] = ()
    #: user fields (``owner``) or user sub-fields of a list (``actions.responsible``) whose
    #: people may not do or sign the step
    not_named_in: tuple[str, ...] = ()
    not_in_area: AreaRule | None = None

    def __bool__(self) -> bool:
        return bool(self.not_initiator or self.not_actor_of or self.not_named_in
                    or self.not_in_area)


@dataclass(frozen=True)
class NotBefore:
    """The earliest time a step may be taken: the start of the day a date field holds, or a
    duration after the record entered the step's state. ``early``: ``refuse`` (NotYetOpen)
    or ``reason`` (allowed with a reason, flagged ``taken_early`` on the record)."""

    field: str | None = None
    after: timedelta | None = None
    early: str = "refuse"


@dataclass(frozen=True)
class WaitsFor:
    """Linked records the step waits for: every record linked to this one (of ``workflow``,
    by links of kind ``link``, when given) must be closed, with ``outcome`` when given. The
    record that spawned this one is never waited for."""

    workflow: str | None = None
    link: str | None = None
    outcome: str | None = None
    #: instead of closed: in one of these states (e.g. the document versions effective)
    states: tuple[str, ...] = ()
    #: the records linked to this record's linked records of workflow ``via`` (two hops, by
    #: ``link`` each: the training records of the document versions a change created)
    via: str | None = None

    def __str__(self) -> str:
        what = f"{self.workflow} records" if self.workflow else "linked records"
        via = f" linked as {self.link}" if self.link else ""
        if self.via:
            via += f" to its {self.via} records"
        if self.states:
            return f"{what}{via} {' or '.join(self.states)}"
        return f"{what}{via} closed" + (f" with outcome {self.outcome}" if self.outcome else "")


@dataclass(frozen=True)
class TransitionSpec:
    name: str
    label: str
    sources: tuple[str, ...]
    dest: str
    roles: tuple[str, ...]
    edits: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    guards: tuple[Guard, ...] = ()
    reason_required: bool = False
    signature: SignatureSpec | None = None
    separation: Separation = field(default_factory=Separation)
    training: tuple[TrainingRequirement, ...] = ()
    # signed content (workflow/spec/content.py): the fields this step's signature locks, the
    # locked fields or list columns ("list.column") still editable, the signed steps whose
    # locks this step releases (a send-back for re-approval)
    locks: tuple[str, ...] = ()
    editable_after: tuple[str, ...] = ()
    unlocks: tuple[str, ...] = ()
    not_before: NotBefore | None = None
    waits_for: tuple[WaitsFor, ...] = ()


@dataclass(frozen=True)
class Exclusive:
    """At most one record of the workflow with the same values of the ``key`` fields is in
    one of ``states`` at a time (``exclusive:``; workflow/engine/exclusive.py enforces it).
    ``message``: what a refused person reads first."""

    key: tuple[str, ...]
    states: tuple[str, ...]
    message: str = ""


@dataclass(frozen=True)
class Milestone:
    """A measured span of a record's life: from the first entry into state ``start`` (or,
    with ``start_field``, from the time a date/time field holds, e.g. when an incident
    occurred; ``start`` is then ``""``) to the last entry into state ``stop``."""

    name: str
    label: str
    start: str
    stop: str
    start_field: str | None = None


@dataclass(frozen=True)
class KpiCondition:
    """One condition of a declared KPI: a field ``equals`` / ``in`` / ``not_in`` values, is
    ``set`` (values = (True,) or (False,)), a date field is ``due_within`` a span after the
    as-of day (values = (timedelta,)), or the record ``reached`` a state by the as-of time
    (``state``)."""

    field: str | None = None
    op: str = "equals"  # equals | in | not_in | set | due_within | reached
    values: tuple[Any, ...] = ()
    state: str | None = None


@dataclass(frozen=True)
class DeclaredKpi:
    """A KPI the definition declares (``kpis:``), computed by a generic cohort
    (workflow/kpi/declared.py; docs/kpis.md). Its metric key is ``<workflow key>.<name>``."""

    name: str
    kind: str  # count | count_by | share | overdue | open_age | milestone_days | milestone_within | on_time
    label: str
    help: str = ""
    base: str = "created"  # count, count_by, share: created | open | closed | finished
    where: tuple[KpiCondition, ...] = ()  # the records considered (all conditions hold)
    hit: tuple[KpiCondition, ...] = ()  # share: counted in the numerator
    field: str | None = None  # count_by: the field grouped by
    milestone: str | None = None  # milestone_days, milestone_within
    stat: str = "median"  # milestone_days: median | mean
    within: timedelta | None = None  # milestone_within
    due: str | None = None  # overdue, on_time: due_current (default) | due_original | a date field
    threshold: Mapping[str, Any] | None = None  # default green / amber (QMS_KPI_THRESHOLDS wins)


@dataclass(frozen=True)
class TrainingCapability:
    """Records of this workflow are training records: completed with outcome done, one
    shows that the user named in field ``trainee`` is trained on the document (and version)
    named in fields ``document`` (and ``version``). ``due``: the date field a new
    assignment's due date goes in (the refresher job sets it)."""

    trainee: str
    document: str
    version: str | None = None
    due: str | None = None


@dataclass(frozen=True)
class DocumentCapability:
    """Records of this workflow are versions of controlled documents, one record per version:
    the fields holding the document number, version, title, type, effective date, retraining
    interval (days) and next periodic review date; ``effective_state``: the state of the
    version in force (workflow/queries/documents.py reads them)."""

    number: str
    version: str
    title: str
    effective_state: str
    type: str | None = None
    effective_date: str | None = None
    retraining_days: str | None = None
    next_review: str | None = None


@dataclass(frozen=True)
class InventoryCapability:
    """Records of this workflow are computerised-system inventory entries: ``name`` is the
    string field naming the system, ``owner`` the user field of its system owner,
    ``in_scope`` the boolean field that puts an active entry in the periodic access review,
    ``active_state`` the state of an approved entry. ``qms init`` registers this QMS
    (QMS_SYSTEM_NAME) as an entry; schedules take their systems from these records."""

    name: str
    active_state: str
    owner: str | None = None
    in_scope: str | None = None


@dataclass(frozen=True)
class RiskCapability:
    """Records of this workflow hold risks as the rows of list field ``rows``; the other
    names are its columns (the risk register, workflow/queries/risks.py, reads them)."""

    rows: str
    hazard: str = "hazard"
    score: str = "score"
    priority: str = "priority"
    treatment: str = "treatment"
    due: str = "due"
    residual_priority: str = "residual_priority"
    links: tuple[str, ...] = ("capa", "change")

    def columns(self) -> tuple[str, ...]:
        return (self.hazard, self.score, self.priority, self.treatment, self.due,
                self.residual_priority, *self.links)


@dataclass(frozen=True)
class CurriculumCapability:
    """Records of this workflow are training curricula: while in ``active_state``, one says
    that every holder of the role in field ``role`` must be trained on each document named
    in the list field ``items`` (sub-field ``document``: the document number; ``kind``: the
    training kind), within ``due_days`` (an integer field) of being assigned."""

    role: str
    items: str
    document: str
    kind: str | None = None
    due_days: str | None = None
    active_state: str = "active"


@dataclass(frozen=True)
class Capabilities:
    """What records of a workflow are to the engine's general rules (``capabilities:`` in
    the YAML), so that the engine never names a shipped workflow or its fields."""

    training: TrainingCapability | None = None
    document: DocumentCapability | None = None
    inventory: InventoryCapability | None = None
    risk: RiskCapability | None = None
    curriculum: CurriculumCapability | None = None


@dataclass(frozen=True)
class WorkflowDefinition:
    key: str
    title: str
    prefix: str
    description: str
    risk: str
    process_owner: str | None
    due_in: timedelta | None
    extension_roles: tuple[str, ...]
    roles: Mapping[str, str]
    fields: Mapping[str, FieldSpec]
    start_roles: tuple[str, ...]
    start_edits: tuple[str, ...]
    start_requires: tuple[str, ...]
    states: Mapping[str, StateSpec]
    transitions: Mapping[str, TransitionSpec]
    milestones: Mapping[str, Milestone]
    source: str = field(repr=False, compare=False)
    start_guards: tuple[Guard, ...] = ()
    capabilities: Capabilities = Capabilities()
    exclusive: tuple[Exclusive, ...] = ()
    kpis: Mapping[str, DeclaredKpi] = field(default_factory=dict)
    content_hash: str = ""
    origin: str = "<string>"

    @property
    def initial_state(self) -> str:
        return next(s.name for s in self.states.values() if s.initial)

    def transitions_from(self, state: str) -> list[TransitionSpec]:
        return [t for t in self.transitions.values() if state in t.sources]

    def summary(self) -> str:
        finals = sum(1 for s in self.states.values() if s.final)
        gates = sum(1 for t in self.transitions.values() if t.signature)
        return (
            f"{self.key} ({self.title}): {len(self.states)} states ({finals} final), "
            f"{len(self.transitions)} transitions, {gates} signature gates, "
            f"{len(self.fields)} fields, sha256 {self.content_hash[:12]}"
        )

