"""The training matrix as people read it (no Flask): people x documents, each cell saying
whether the person is trained on the EFFECTIVE version (current), has an open assignment
(due / overdue), lacks it (missing), or does not need it (not required); the per-document
view; the export rows; and the compliance figures by role and by document.

Everything is read in a handful of statements on the caller's session: the active curricula,
the active role grants, the effective versions, and the training records on the documents
the curricula name."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from workflow import clock, rules
from workflow.db.models import Record, RoleGrant, User
from workflow.queries import documents as docs
from workflow.registry import Registry
from workflow.training import curricula as cur

#: cell statuses, in the order the legend lists them
STATUSES = ("current", "due", "overdue", "missing", "not_required")
STATUS_LABELS = {"current": "Current", "due": "Due", "overdue": "Overdue",
                 "missing": "Not trained", "not_required": "Not required"}


@dataclass(frozen=True)
class Column:
    number: str
    title: str
    version: str | None  # the effective version (None: none is effective)
    record_number: str | None
    effective_date: date | None
    retraining_days: int | None


#: the group of people without a department (compliance by department, the filter)
NO_DEPARTMENT = "(no department)"


@dataclass(frozen=True)
class Cell:
    status: str
    kind: str | None = None  # the training kind required
    version: str | None = None  # the version the status is about
    due: date | None = None
    assignment: str | None = None  # the open assignment's number (due / overdue)
    completed_at: datetime | None = None  # the current training's completion
    expires: datetime | None = None  # when the current training expires (retraining)
    required_by: str | None = None  # curriculum and role

    @property
    def label(self) -> str:
        return STATUS_LABELS[self.status]


@dataclass(frozen=True)
class Person:
    username: str
    full_name: str
    roles: tuple[str, ...]
    cells: dict[str, Cell]
    department: str | None = None


@dataclass(frozen=True)
class Matrix:
    columns: list[Column]
    people: list[Person]
    as_of: datetime
    counts: dict[str, int] = field(default_factory=dict)

    def compliance(self) -> tuple[int, int]:
        """(current, required) over every required cell."""
        req = sum(v for k, v in self.counts.items() if k != "not_required")
        return self.counts.get("current", 0), req


@dataclass(frozen=True)
class _Training:
    version: str
    closed_at: datetime | None
    outcome: str | None
    due: date | None
    number: str


def _people(session: Session, at: datetime) -> dict[str, tuple[str, set[str], str | None]]:
    """Active people with their active roles (the active-grant rule) and department."""
    q = (select(User.username, User.full_name, RoleGrant.role, User.department)
         .join(RoleGrant, RoleGrant.user_id == User.id)
         .where(rules.active_grant_clause(at), User.active.is_(True),
                User.is_system.is_(False)))
    out: dict[str, tuple[str, set[str], str | None]] = {}
    for username, full_name, role, department in session.execute(q):
        out.setdefault(username, (full_name, set(), department))[1].add(role)
    return out


def _trainings(session: Session, registry: Registry, numbers: Iterable[str]
               ) -> dict[tuple[str, str], list[_Training]]:
    """Training records on the documents, by (trainee, document number)."""
    workflows = rules.training_workflows(registry.newest(session).values())
    nums = sorted(set(numbers))
    if not workflows or not nums:
        return {}
    conds = [(Record.workflow_key == k) & rules.document_of(cap).in_(nums)
             for k, cap in workflows.items()]
    out: dict[tuple[str, str], list[_Training]] = defaultdict(list)
    q = select(Record.workflow_key, Record.number, Record.data, Record.closed_at,
               Record.outcome).where(or_(*conds)).order_by(Record.id)
    for key, number, data, closed_at, outcome in session.execute(q):
        cap = workflows[key]
        due = None
        if cap.due and data.get(cap.due):
            try:
                due = date.fromisoformat(str(data[cap.due])[:10])
            except ValueError:
                due = None
        version = str(data.get(cap.version) or "") if cap.version else ""
        out[(str(data.get(cap.trainee) or ""), str(data.get(cap.document) or ""))].append(
            _Training(version, closed_at, outcome, due, number))
    return out


def columns(session: Session, registry: Registry, numbers: Iterable[str]) -> list[Column]:
    effective = {v.number: v for v in docs.effective_documents(session, registry=registry)}
    out = []
    for n in sorted(set(numbers)):
        v = effective.get(n)
        if v is None:
            versions = docs.document_versions(session, n, registry=registry)
            title = versions[-1].title if versions else n
            out.append(Column(n, title, None, None, None, None))
        else:
            out.append(Column(n, v.title, str(v.version), v.record_number, v.effective_date,
                              v.retraining_days))
    return out


def cell(col: Column, req: cur.Required | None, trainings: list[_Training],
         now: datetime) -> Cell:
    """One person's status on one document."""
    if req is None:
        return Cell("not_required")
    kind, by = req.kind, f"{req.curriculum} (role {req.role})"
    if col.version is not None:
        for t in sorted(trainings, key=lambda t: t.closed_at or now, reverse=True):
            if t.version != col.version or t.outcome != rules.DONE or t.closed_at is None \
                    or t.closed_at > now:
                continue
            expires = (t.closed_at + timedelta(days=col.retraining_days)
                       if col.retraining_days else None)
            if expires is None or expires > now:
                return Cell("current", version=col.version, completed_at=t.closed_at,
                            expires=expires, kind=kind, required_by=by)
    open_ = [t for t in trainings if t.closed_at is None]
    if open_:
        t = min(open_, key=lambda t: (t.due or date.max, t.number))
        late = t.due is not None and clock.end_of_day(t.due) <= now
        return Cell("overdue" if late else "due", version=t.version or None, due=t.due,
                    assignment=t.number, kind=kind, required_by=by)
    return Cell("missing", version=col.version, kind=kind, required_by=by)


def matrix(session: Session, registry: Registry, *, now: datetime | None = None,
           role: str | None = None, document: str | None = None,
           username: str | None = None, department: str | None = None) -> Matrix:
    """The matrix of the active curricula: a column per document they name, a row per
    active person holding a role (filtered by ``role``, ``document``, ``username``,
    ``department``: a person's department, ``NO_DEPARTMENT`` for people without one)."""
    now = now or clock.now()
    curricula = cur.active(session, registry)
    numbers = {it.document for c in curricula for it in c.items}
    if document is not None:
        numbers &= {document}
    cols = columns(session, registry, numbers)
    people = _people(session, now)
    trainings = _trainings(session, registry, numbers)
    rows = []
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for name in sorted(people):
        full_name, roles, dept = people[name]
        if (role is not None and role not in roles) or (username is not None
                                                        and name != username):
            continue
        if department is not None and (dept or NO_DEPARTMENT) != department:
            continue
        required = cur.required_for(curricula, roles)
        if role is not None:
            required = cur.required_for(curricula, [role])
        cells = {}
        for col in cols:
            c = cell(col, required.get(col.number), trainings.get((name, col.number), []), now)
            cells[col.number] = c
            counts[c.status] += 1
        if document is not None and all(c.status == "not_required" for c in cells.values()):
            continue
        rows.append(Person(name, full_name, tuple(sorted(roles)), cells, dept))
    return Matrix(cols, rows, now, counts)


@dataclass(frozen=True)
class Compliance:
    """Current trainings of the required ones, for one role or document."""

    key: str
    current: int
    required: int
    overdue: int

    @property
    def percent(self) -> float | None:
        return round(100.0 * self.current / self.required, 1) if self.required else None


def compliance_by_document(m: Matrix) -> list[Compliance]:
    out = []
    for col in m.columns:
        cells = [p.cells[col.number] for p in m.people]
        req = [c for c in cells if c.status != "not_required"]
        out.append(Compliance(col.number, sum(c.status == "current" for c in req), len(req),
                              sum(c.status == "overdue" for c in req)))
    return out


def compliance_by_department(m: Matrix) -> list[Compliance]:
    """Per department (the people's, as an administrator set it; ``NO_DEPARTMENT`` for
    people without one): their current trainings of the required ones."""
    groups: dict[str, list[Cell]] = defaultdict(list)
    for p in m.people:
        groups[p.department or NO_DEPARTMENT].extend(
            c for c in p.cells.values() if c.status != "not_required")
    return [Compliance(k, sum(c.status == "current" for c in cells), len(cells),
                       sum(c.status == "overdue" for c in cells))
            for k, cells in sorted(groups.items()) if cells]


def compliance_by_role(session: Session, registry: Registry, *,
                       now: datetime | None = None) -> list[Compliance]:
    """Per role with an active curriculum: its holders' current trainings on the role's
    required documents (effective versions)."""
    out = []
    for role in sorted({c.role for c in cur.active(session, registry)}):
        m = matrix(session, registry, now=now, role=role)
        current, required = m.compliance()
        out.append(Compliance(role, current, required, m.counts.get("overdue", 0)))
    return out


def export_rows(m: Matrix) -> list[list[str]]:
    """The matrix as CSV rows (one per person and required document, and a header)."""
    rows = [["username", "full_name", "roles", "document", "title", "effective_version",
             "status", "kind", "version", "due", "assignment", "completed_at", "expires",
             "required_by"]]
    for p in m.people:
        for col in m.columns:
            c = p.cells[col.number]
            rows.append([p.username, p.full_name, " ".join(p.roles), col.number, col.title,
                         col.version or "", c.status, c.kind or "", c.version or "",
                         c.due.isoformat() if c.due else "", c.assignment or "",
                         c.completed_at.isoformat() if c.completed_at else "",
                         c.expires.isoformat() if c.expires else "", c.required_by or ""])
    return rows
