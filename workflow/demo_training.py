"""Demo data of the training matrix (issue 19): a curriculum for each demo role on the demo's
controlled documents (workflow/demo.py ``_documents``), and people in every training state -
current, due, overdue, not trained.

Training becomes overdue only after its due date, so the first curricula and the trainings
are played some weeks in the past (``clock.advance``, as the tests do; the people hold their
roles since long before) and the clock is moved forward again; the curricula on the access
control procedure (approved, not yet effective) are approved today. Everything goes through
the engine."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from workflow import clock
from workflow.db.models import Record
from workflow.engine.core import Engine
from workflow.signatures.mac import VouchedSignature

#: role -> (document, training kind), approved 19 days ago (training due within 14 days)
CURRICULA = {
    "qa": [("SOP-CAPA-001", "assessment"), ("SOP-DEV-001", "read_and_understood"),
           ("POL-ES-001", "read_and_understood")],
    "capa_owner": [("SOP-CAPA-001", "classroom")],
    "deviation_owner": [("SOP-DEV-001", "read_and_understood")],
    "employee": [("POL-IS-001", "read_and_understood"), ("POL-ES-001", "read_and_understood")],
}
#: approved today, on the procedure still in its training period
TODAY = {
    "access_admin": [("SOP-IT-002", "on_the_job")],
    "isms": [("POL-IS-001", "read_and_understood"), ("SOP-IT-002", "classroom")],
}
#: (trainee, document) left open: overdue now
BEHIND = {("emma", "POL-ES-001"), ("olga", "SOP-DEV-001"), ("quentin", "SOP-CAPA-001")}


def _sig(username: str) -> VouchedSignature:
    return VouchedSignature(username, method="demo-seed")


def _curriculum(e: Engine, role: str, items: list[tuple[str, str]]) -> str:
    n = e.start("curriculum", "tina", {
        "title": f"Curriculum: {role}", "role": role, "due_days": 14,
        "documents": [{"document": d, "kind": k} for d, k in items],
        "change_summary": "First issue."}).number
    e.fire(n, "submit", "tina")
    e.fire(n, "approve", "quinn", signature=_sig("quinn"))
    return n


def _open_assignments(e: Engine) -> list[tuple[str, str, str, bool]]:
    """(number, trainee, document, assessment required) of the open assignments the matrix
    made (they name the curriculum requiring them)."""
    with e.reader() as s:
        rows = s.execute(select(Record.number, Record.data).where(
            Record.workflow_key == "training_assignment", Record.closed_at.is_(None))
            .order_by(Record.id)).all()
    return [(n, d.get("trainee"), d.get("document"), bool(d.get("assessment_required")))
            for n, d in rows if d.get("required_by")]


def _complete(e: Engine, number: str, trainee: str, assessment: bool) -> None:
    trainer = "quentin" if trainee == "tina" else "tina"
    if assessment:
        e.fire(number, "complete_for_assessment", trainee, signature=_sig(trainee))
        e.fire(number, "record_assessment", trainer, {
            "assessment_score": 90, "assessment_passed": True})
    else:
        e.fire(number, "complete", trainee, signature=_sig(trainee))
    e.fire(number, "verify", trainer, signature=_sig(trainer))


def seed(e: Engine) -> list[str]:
    """The training-matrix story; returns the records it made."""
    with e.reader() as s:
        first = s.execute(select(func.max(Record.id))).scalar_one() or 0
    moved = timedelta(0)

    def at(delta: timedelta) -> None:
        nonlocal moved
        clock.advance(delta)
        moved += delta

    try:
        at(-timedelta(days=19))
        for role, items in CURRICULA.items():
            _curriculum(e, role, items)
        at(timedelta(days=4))  # most people train within days; a few do not
        for number, trainee, doc, assessment in _open_assignments(e):
            if (trainee, doc) not in BEHIND:
                _complete(e, number, trainee, assessment)
    finally:
        clock.advance(-moved)
    for role, items in TODAY.items():
        _curriculum(e, role, items)
    for number, trainee, doc, _a in _open_assignments(e):
        if (trainee, doc) == ("aaron", "SOP-IT-002"):
            e.fire(number, "cancel", "tina", reason="demo: on leave, to be re-planned")
    with e.reader() as s:
        return list(s.execute(select(Record.number).where(Record.id > first)
                              .order_by(Record.id)).scalars())
