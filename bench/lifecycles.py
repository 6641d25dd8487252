"""Template lifecycles for bench/datagen.py: records run through the real engine, step by
step, with the clock moved between the steps by realistic durations.

Each scenario takes the engine, a random generator and the template people (:data:`P`) and
returns the numbers of the records it made, the root first (a closed deviation brings the
CAPA it raised, a change with training brings its training assignments). bench/datagen.py
clones each group many times, shifted in time and with other people; the durations differ
between the variants of a scenario, so cycle times, on-time shares and overdue counts spread
as they would in a real site.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace

from sqlalchemy import or_, select

from workflow import clock
from workflow.db.models import Record, RecordLink
from workflow.engine.core import Engine
from workflow.signatures.mac import VouchedSignature

# the template people: creator, trainee, owner, two QA, process owner, trainer (clones
# substitute each with another person of the same kind)
P = SimpleNamespace(C="emp000", T="emp001", O="owner00", Q="qa00", Q2="qa01", PO="po00",
                    TR="trn00")

Scenario = Callable[[Engine, random.Random], list[str]]


def _wait(rng: random.Random, lo: float, hi: float) -> None:
    """Let between ``lo`` and ``hi`` days pass (skewed towards the short end, as work is)."""
    span = hi - lo
    clock.advance(timedelta(days=lo + span * rng.random() ** 2, minutes=rng.randint(1, 600)))


def _day(days: float = 0) -> str:
    return (clock.now() + timedelta(days=days)).date().isoformat()


def _sig(who: str) -> VouchedSignature:
    return VouchedSignature(who, "benchmark")


#: the document the shipped CAPA's closure requires training on (definitions/capa.yaml)
CAPA_SOP = "SOP-CAPA-001"


def give_training(engine: Engine, trainee: str, trainer: str, document: str = CAPA_SOP) -> str:
    """A completed training of ``trainee`` on ``document`` the engine's way (assigned by the
    trainer as coordinator, signed "Read and understood", verified): who closes a CAPA must
    hold one (the training gate); the trainee holds the employee role, the trainer trainer
    and training_coordinator."""
    n = engine.start("training_assignment", trainer, {
        "title": f"{document} (benchmark)", "document": document, "document_version": "1",
        "trainee": trainee, "due_date": _day(30)}).number
    engine.fire(n, "complete", trainee, signature=_sig(trainee))
    engine.fire(n, "verify", trainer, signature=_sig(trainer))
    return n


def _linked(engine: Engine, number: str) -> list[str]:
    """Records linked to ``number`` (spawned by it or linking to it), oldest first."""
    with engine.reader() as s:
        rid = s.execute(select(Record.id).where(Record.number == number)).scalar_one()
        ids = {x for row in s.execute(select(RecordLink.source_id, RecordLink.target_id).where(
            or_(RecordLink.source_id == rid, RecordLink.target_id == rid))) for x in row} - {rid}
        return list(s.execute(select(Record.number).where(Record.id.in_(ids))
                              .order_by(Record.id)).scalars())


# --------------------------------------------------------------------------- CAPA

CAPA = {"title": "Template CAPA", "description": "Template description"}


def capa_to(engine: Engine, rng: random.Random, state: str, number: str | None = None) -> str:
    """A CAPA (new, or ``number``) from open up to ``state`` ("closed" for the whole way,
    with sometimes a rejected plan, a failed effectiveness check or an early check)."""
    f = engine.fire
    n = number or engine.start("capa", P.C, CAPA).number
    if state == "open":
        return n
    _wait(rng, 0.2, 8)
    f(n, "assign", P.Q, {"owner": P.O})
    if state == "investigation":
        return n
    _wait(rng, 3, 45)
    f(n, "submit_root_cause", P.O, {"root_cause_category": rng.choice(
        ["human_error", "equipment", "material", "method", "environment"]),
        "root_cause": "The work instruction was ambiguous."})
    if state == "action_plan":
        return n
    acts = [{"description": "Rewrite WI-12", "responsible": P.O, "due": _day(60)},
            {"description": "Train the shift", "responsible": P.O, "due": _day(75)}]
    days = rng.choice([30, 60, 90])
    _wait(rng, 2, 20)
    f(n, "submit_plan", P.O, {"actions": acts, "effectiveness_criteria": "no recurrence",
                              "effectiveness_check_days": days})
    if rng.random() < 0.2:
        _wait(rng, 1, 7)
        f(n, "reject_plan", P.Q, {"plan_rejection_reason": "vague"}, reason="too vague")
        _wait(rng, 1, 10)
        f(n, "submit_plan", P.O, {"actions": acts, "effectiveness_criteria": "none in 90 days"})
    if state == "plan_approval":
        return n
    _wait(rng, 0.5, 9)
    f(n, "approve_plan", P.Q, signature=_sig(P.Q))
    if state == "implementation":
        return n
    _wait(rng, 10, 100)
    done = [dict(a, done=True, evidence="SOP revision effective") for a in acts]
    f(n, "complete_implementation", P.O, {"actions": done,
                                          "implementation_summary": "Both actions done."})
    if state == "verification":
        return n
    _wait(rng, 1, 18)
    f(n, "verify", P.Q, {"verification_evidence": "Checked on the line."}, signature=_sig(P.Q))
    if state == "effectiveness_check":
        return n
    if rng.random() < 0.1:  # judged early, with a reason (KPI capa.effectiveness_early)
        _wait(rng, days * 0.5, days * 0.9)
        f(n, "record_effectiveness", P.Q, {"effectiveness_result": "effective",
                                           "effectiveness_evidence": "No recurrence."},
          reason="Line closes for the summer; checked early.")
    else:
        _wait(rng, days + 0.1, days + 25)
        f(n, "record_effectiveness", P.Q, {"effectiveness_result": "effective",
                                           "effectiveness_evidence": "No recurrence."})
    _wait(rng, 0.5, 12)
    f(n, "close", P.Q2, signature=_sig(P.Q2))
    return n


def capa(state: str) -> Scenario:
    return lambda engine, rng: [capa_to(engine, rng, state)]


def capa_cancelled(engine: Engine, rng: random.Random) -> list[str]:
    n = capa_to(engine, rng, rng.choice(["open", "investigation"]))
    _wait(rng, 1, 20)
    engine.fire(n, "cancel", P.Q, reason="Duplicate of another CAPA.", signature=_sig(P.Q))
    return [n]


# --------------------------------------------------------------------------- deviation

def _deviation(engine: Engine, rng: random.Random, state: str, major: bool) -> list[str]:
    f = engine.fire
    n = engine.start("deviation", P.C, {
        "title": "Template deviation", "description": "Observed during the shift.",
        "occurred_on": _day(-1), "discovered_on": _day(), "area": "Packaging",
        "immediate_actions": "Line stopped, material quarantined."}).number
    if state == "reported":
        return [n]
    _wait(rng, 0.1, 4)
    cls = {"classification": "major", "capa_required": True} if major else \
        {"classification": "minor", "capa_required": False,
         "capa_rationale": "Isolated event, the cause is not systemic."}
    f(n, "triage", P.Q, {**cls, "classification_rationale": "Impact assessed at triage.",
                         "investigator": P.O})
    if state == "investigation":
        return [n]
    _wait(rng, 3, 35)
    f(n, "submit_investigation", P.O, {
        "root_cause_category": "human_error", "root_cause": "Step skipped.",
        "impact_assessment": "No product impact.", "batch_disposition": "release",
        "capa_required": cls["capa_required"], **({} if major else
                                                  {"capa_rationale": cls["capa_rationale"]})})
    if state == "qa_review":
        return [n]
    _wait(rng, 0.5, 8)
    f(n, "approve", P.Q2, {"classification": cls["classification"],
                           "capa_required": cls["capa_required"]}, signature=_sig(P.Q2))
    spawned = _linked(engine, n)
    if spawned and state == "closed+capa":
        _wait(rng, 0.1, 3)
        capa_to(engine, rng, "closed", spawned[0])
    return [n, *spawned]


def deviation(state: str, major: bool = False) -> Scenario:
    return lambda engine, rng: _deviation(engine, rng, state, major)


# --------------------------------------------------------------------------- change request

def _change(engine: Engine, rng: random.Random, state: str, trainees: int) -> list[str]:
    f = engine.fire
    n = engine.start("change_request", P.C, {"title": "Template change",
                                             "description": "Replace the filter housing."}
                     ).number
    if state == "draft":
        return [n]
    if state == "withdrawn":
        _wait(rng, 0.5, 20)
        f(n, "withdraw", P.C, reason="Superseded by another change.")
        return [n]
    _wait(rng, 0.5, 10)
    f(n, "submit", P.C, {"justification": "Obsolete part.", "change_type": "equipment",
                         "owner": P.O})
    _wait(rng, 2, 20)
    people = [P.T, P.C][:trainees]
    docs = [{"document": "SOP-014", "document_version": "3", "trainee": who, "due": _day(90)}
            for who in people]
    f(n, "submit_for_approval", P.O, {
        "classification": "minor", "quality_impact": "none: like for like",
        "regulatory_impact": "none", "validation_impact": "none",
        "training_impact": "read_and_understood" if trainees else "none",
        "implementation_plan": "Swap during the shutdown.", "target_date": _day(40),
        **({"affected_documents": docs} if docs else {})})
    if state == "approval":
        return [n]
    _wait(rng, 0.5, 8)
    f(n, "approve", P.Q, signature=_sig(P.Q))
    _wait(rng, 0.1, 5)
    f(n, "approve", P.PO, signature=_sig(P.PO))
    _wait(rng, 5, 40)
    if not trainees:
        f(n, "complete_implementation_no_training", P.O, {"implementation_summary": "Done."})
    else:
        f(n, "complete_implementation", P.O, {"implementation_summary": "Done."})
        spawned = _linked(engine, n)
        for t, who in zip(spawned, people, strict=True):
            training_to(engine, rng, "completed", t, trainee=who)
        _wait(rng, 0.5, 5)
        f(n, "confirm_training", P.O, {"training_summary": "All trained."})
    _wait(rng, 1, 14)
    f(n, "verify", P.Q, {"verification_evidence": "Installed and checked."},
      signature=_sig(P.Q))
    return [n, *_linked(engine, n)]


def change(state: str, trainees: int = 0) -> Scenario:
    return lambda engine, rng: _change(engine, rng, state, trainees)


# --------------------------------------------------------------------------- training, reviews

def training_to(engine: Engine, rng: random.Random, state: str, number: str | None = None,
                trainee: str = P.T) -> str:
    """A training assignment up to ``state``; one in five runs late (marked overdue first)."""
    f = engine.fire
    n = number or engine.start("training_assignment", P.Q, {
        "title": "Training: SOP-001 version 7", "document": "SOP-001",
        "document_version": "7", "trainee": trainee, "due_date": _day(30)}).number
    if state == "assigned":
        return n
    if rng.random() < 0.2:
        with engine.reader() as s:
            due = s.execute(select(Record.data).where(Record.number == n)).scalar_one()["due_date"]
        late = datetime.combine(date.fromisoformat(due), time(0), UTC) + timedelta(
            days=1 + rng.uniform(0, 20))
        clock.advance(max(late - clock.now(), timedelta(0)))
        f(n, "mark_overdue", P.Q)
    else:
        _wait(rng, 0.5, 25)
    f(n, "complete", trainee, signature=_sig(trainee))
    _wait(rng, 0.5, 10)
    f(n, "verify", P.TR, {"verification_comment": "Discussed."}, signature=_sig(P.TR))
    return n


def training(state: str) -> Scenario:
    return lambda engine, rng: [training_to(engine, rng, state)]


def audit_review(engine: Engine, rng: random.Random) -> list[str]:
    start = clock.now() - timedelta(days=30)
    n = engine.start("audit_trail_review", P.Q, {
        "title": "Audit trail review", "period": start.strftime("%Y-%m"),
        "window_from": start.isoformat(), "window_to": clock.now().isoformat(),
        "records": [], "records_listed": 0}).number
    _wait(rng, 1, 16)
    engine.fire(n, "sign_review", P.Q2, {"records": []}, signature=_sig(P.Q2))
    return [n]


# --------------------------------------------------------------------------- the mix

#: scenario name -> (scenario, weight per 100 groups, variants). Closed or otherwise final
#: lifecycles make about two thirds of the groups; the open ones leave QA hundreds of
#: thousands of claimable tasks at a million records.
MIX: dict[str, tuple[Scenario, float, int]] = {
    "capa_closed": (capa("closed"), 12, 8),
    "capa_cancelled": (capa_cancelled, 2, 2),
    "dev_minor_closed": (deviation("closed"), 14, 6),
    "dev_major_closed": (deviation("closed+capa", major=True), 5, 6),
    "dev_major_capa_open": (deviation("closed", major=True), 2, 2),
    "cr_closed": (change("closed"), 6, 6),
    "cr_closed_training": (change("closed", trainees=2), 4, 6),
    "cr_withdrawn": (change("withdrawn"), 5, 2),
    "trn_completed": (training("completed"), 6, 6),
    "atr_closed": (audit_review, 2, 3),
    "capa_open": (capa("open"), 6, 2),
    "capa_investigation": (capa("investigation"), 3, 2),
    "capa_action_plan": (capa("action_plan"), 3, 2),
    "capa_plan_approval": (capa("plan_approval"), 3, 2),
    "capa_implementation": (capa("implementation"), 2, 2),
    "capa_verification": (capa("verification"), 2, 2),
    "capa_effectiveness": (capa("effectiveness_check"), 2, 2),
    "dev_reported": (deviation("reported"), 6, 2),
    "dev_investigation": (deviation("investigation"), 2, 2),
    "dev_qa_review": (deviation("qa_review"), 3, 2),
    "cr_draft": (change("draft"), 2, 2),
    "cr_approval": (change("approval"), 2, 2),
    "trn_assigned": (training("assigned"), 3, 2),
}

#: the measured user's open work: CAPAs she owns (investigation, action plan) and change
#: requests she drafts
HOT = {"capa_investigation": 0.4, "capa_action_plan": 0.4, "cr_draft": 0.2}
