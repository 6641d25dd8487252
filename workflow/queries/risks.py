"""The risk register: the risks of every record whose workflow declares the ``risk``
capability (definitions/risk_assessment.yaml), one row per risk, as the viewer may see them
(rules.visible_clause), highest priority first, with treatment status and whether the
treatment is overdue. Reads only; the caller's session."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import rules
from workflow.db.models import DefinitionVersion, Record, User
from workflow.registry import Registry
from workflow.spec.model import RiskCapability, WorkflowDefinition

PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}
#: a risk's status in the register, in the order the filter offers them
STATUSES = ("untreated", "accepted", "mitigating", "mitigated", "closed")


@dataclass(frozen=True)
class RiskRow:
    number: str
    title: str
    state: str
    row: int  # 1-based row of the assessment's risk list
    hazard: str
    score: int | None
    priority: str
    treatment: str
    due: str
    links: tuple[tuple[str, str, bool], ...]  # (number, state label, closed)
    residual_priority: str
    status: str
    overdue: bool

    @property
    def is_open(self) -> bool:
        return self.status != "closed"

    def csv(self) -> list[Any]:
        return [self.number, self.row, self.title, self.state, self.hazard, self.score,
                self.priority, self.treatment, self.due,
                " ".join(f"{n} ({s})" for n, s, _ in self.links), self.residual_priority,
                self.status, "yes" if self.overdue else "no"]


CSV_HEADER = ["Assessment", "Risk", "Assessment title", "State", "Hazard", "Score",
              "Priority", "Treatment", "Treatment due", "CAPA / change", "Residual priority",
              "Status", "Overdue"]


def _status(cap: RiskCapability, rec: Record, row: dict[str, Any], d: WorkflowDefinition
            ) -> str:
    if rec.closed_at is not None:
        return "closed"
    treatment = row.get(cap.treatment)
    if not treatment:
        return "untreated"
    if treatment != "mitigate":
        return "accepted"
    return "mitigated" if row.get(cap.residual_priority) else "mitigating"


def register(session: Session, registry: Registry, user: User, roles: set[str], *,
             today: date, priority: str = "", status: str = "", overdue: bool = False,
             open_only: bool = True, text: str = "") -> list[RiskRow]:
    """The register as ``user`` sees it, filtered; highest priority and score first."""
    published = [registry.by_hash(session, h).definition
                 for h in session.execute(select(DefinitionVersion.content_hash)).scalars()]
    keys = sorted({d.key for d in published if d.capabilities.risk is not None})
    if not keys:
        return []
    q = select(Record).where(Record.workflow_key.in_(keys),
                             rules.visible_clause(user, roles, published),
                             (Record.outcome.is_(None)) | (Record.outcome != "void"))
    if open_only:
        q = q.where(Record.closed_at.is_(None))
    recs = list(session.execute(q.order_by(Record.id)).scalars())
    found: list[tuple[Record, WorkflowDefinition, RiskCapability, int, dict[str, Any]]] = []
    numbers: set[str] = set()
    for rec in recs:
        d = registry.by_hash(session, rec.definition_hash).definition
        cap = d.capabilities.risk
        if cap is None:
            continue
        for i, row in enumerate(rec.data.get(cap.rows) or []):
            found.append((rec, d, cap, i + 1, row))
            numbers.update(str(row[c]) for c in cap.links if row.get(c))
    linked = _linked(session, registry, numbers)
    out = []
    needle = text.strip().lower()
    for rec, d, cap, i, row in found:
        st = _status(cap, rec, row, d)
        links = tuple(linked.get(str(row[c]), (str(row[c]), "?", False))
                      for c in cap.links if row.get(c))
        due = str(row.get(cap.due) or "")
        late = bool(st == "mitigating" and due and due < today.isoformat())
        r = RiskRow(rec.number, rec.title, d.states[rec.state].label, i,
                    str(row.get(cap.hazard) or ""), row.get(cap.score),
                    str(row.get(cap.priority) or ""), str(row.get(cap.treatment) or ""), due,
                    links, str(row.get(cap.residual_priority) or ""), st, late)
        if priority and r.priority != priority or status and r.status != status:
            continue
        if overdue and not r.overdue:
            continue
        if needle and needle not in f"{r.number} {r.title} {r.hazard}".lower():
            continue
        out.append(r)
    out.sort(key=lambda r: (PRIORITY_ORDER.get(r.priority, 3), -(r.score or 0), r.number,
                            r.row))
    return out


def _linked(session: Session, registry: Registry, numbers: Iterable[str]
            ) -> dict[str, tuple[str, str, bool]]:
    """number -> (number, state label, closed) of the CAPAs and changes risks name."""
    numbers = sorted(numbers)
    if not numbers:
        return {}
    out = {}
    for rec in session.execute(select(Record).where(Record.number.in_(numbers))).scalars():
        d = registry.by_hash(session, rec.definition_hash).definition
        out[rec.number] = (rec.number, d.states[rec.state].label, rec.closed_at is not None)
    return out


def summary(rows: Iterable[RiskRow]) -> dict[str, int]:
    """Counts the register's header shows: open risks by priority, untreated, overdue."""
    out = {"high": 0, "medium": 0, "low": 0, "untreated": 0, "overdue": 0}
    for r in rows:
        if r.is_open and r.priority in out:
            out[r.priority] += 1
        out["untreated"] += r.status == "untreated"
        out["overdue"] += r.overdue
    return out
