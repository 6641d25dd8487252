"""Demo users and records for ``qms init --demo`` (and ``make run``).

Everything goes through the engine, exactly as a person would do it: the demo records have
real audit trails and signatures. Running it twice adds nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, select

from workflow import clock
from workflow.db.models import Record
from workflow.engine.core import Engine
from workflow.identity import enablement, passwords
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.signatures.mac import VouchedSignature

#: the demo users' password (printed by `make run`); never use demo data in production
DEMO_PASSWORD = "Quality-Demo-2026!"

#: username, printed name, roles
DEMO_USERS: list[tuple[str, str, list[str]]] = [
    ("emma", "Emma Employee", ["employee"]),
    ("quinn", "Quinn Quality", ["qa", "employee"]),
    ("quentin", "Quentin Quality", ["qa", "employee"]),
    ("olga", "Olga Owner", ["capa_owner", "deviation_owner", "change_owner", "employee"]),
    ("paul", "Paul Process-Owner", ["process_owner", "employee"]),
    ("sam", "Sam System-Owner", ["system_owner", "employee"]),
    ("ivy", "Ivy ISMS", ["isms", "employee"]),
    ("aaron", "Aaron Access-Admin", ["access_admin", "employee"]),
    ("tina", "Tina Trainer", ["trainer", "training_coordinator", "employee"]),
    ("ada", "Ada Administrator", ["admin"]),
]


def _sig(username: str) -> VouchedSignature:
    return VouchedSignature(username, method="demo-seed")


def seed(engine: Engine) -> list[str]:
    """Create demo users and records unless they exist; returns lines to print."""
    with engine.reader() as s:
        if identity.find_user(s, "emma") is not None:
            n = s.execute(select(func.count()).select_from(Record)).scalar_one()
            return [f"demo data already present ({n} records); nothing added"]
    with engine.unit() as s:
        system = identity.system_user(s)
        for username, name, roles in DEMO_USERS:
            u = identity.create_user(s, username, name, email=f"{username}@demo.example",
                                     actor=system, reason="demo data")
            passwords.set_password(s, u, DEMO_PASSWORD, actor=system, policy=Policy.from_settings(),
                                   reason="demo data")
            for r in roles:
                identity.grant_role(s, u, r, actor=system, reason="demo data")
            # demo people may sign at once (a real person's identity is verified by an
            # administrator and they accept the e-signature policy themselves)
            enablement.enable_for_system(s, u, reason="demo data")
    made: list[str] = []
    for step in _STORIES:
        made.extend(step(engine))
    return [f"demo users: {', '.join(u for u, _, _ in DEMO_USERS)} "
            f"(password {DEMO_PASSWORD!r}; QA and admin enrol an authenticator at first login)",
            f"demo records: {len(made)} ({', '.join(made)})"]


def _deviations(e: Engine) -> list[str]:
    out = []
    r = e.start("deviation", "emma", {
        "title": "Temperature excursion in cold room 2",
        "description": "Cold room 2 reached 9.4 °C for 40 minutes overnight.",
        "occurred_on": _day(-3), "discovered_on": _day(-2), "area": "Warehouse",
        "immediate_actions": "Product quarantined; room serviced."})
    out.append(r.number)
    r = e.start("deviation", "emma", {
        "title": "Missing signature in batch record B-2291",
        "description": "Line clearance step unsigned.", "occurred_on": _day(-10),
        "discovered_on": _day(-9), "area": "Packaging", "immediate_actions": "Batch on hold."})
    e.fire(r.number, "triage", "quinn", {
        "classification": "minor", "classification_rationale": "No product impact.",
        "capa_required": False, "investigator": "olga",
        "capa_rationale": "Isolated documentation slip; operator retrained on the spot."})
    out.append(r.number)
    # a major deviation, investigated and closed by QA: it raises a CAPA on closing
    r = e.start("deviation", "emma", {
        "title": "Foreign particle in vial lot 24-117", "description": "Black particle seen at "
        "100% visual inspection.", "occurred_on": _day(-20), "discovered_on": _day(-20),
        "area": "Filling", "immediate_actions": "Lot quarantined; line stopped and cleaned."})
    e.fire(r.number, "triage", "quinn", {"classification": "major",
                                         "classification_rationale": "Potential sterility impact.",
                                         "capa_required": True, "investigator": "olga"})
    e.fire(r.number, "submit_investigation", "olga", {
        "root_cause_category": "equipment", "root_cause": "Worn stopper bowl gasket.",
        "impact_assessment": "Lot 24-117 only; gasket replaced.", "batch_disposition": "reject",
        "capa_required": True})
    res = e.fire(r.number, "approve", "quentin", {"classification": "major", "capa_required": True},
                 signature=_sig("quentin"))
    out.append(r.number)
    out.extend(res.created)
    return out


def _capas(e: Engine) -> list[str]:
    out = []
    r = e.start("capa", "emma", {"title": "Label mix-up on line 3",
                                 "description": "Two label rolls swapped at changeover."})
    e.fire(r.number, "assign", "quinn", {"owner": "olga"})
    e.fire(r.number, "submit_root_cause", "olga", {"root_cause_category": "method",
                                                   "root_cause": "Changeover check list lacks "
                                                   "a label verification step."})
    e.fire(r.number, "submit_plan", "olga", {
        "actions": [{"description": "Add label verification to changeover checklist",
                     "responsible": "olga", "due": _day(20)}],
        "effectiveness_criteria": "No label mix-ups in the next 3 months."})
    out.append(r.number)  # waiting for QA plan approval
    r = e.start("capa", "quinn", {"title": "Recurring HVAC alarms in suite B",
                                  "description": "Five alarms in one month."})
    e.fire(r.number, "assign", "quinn", {"owner": "olga"})
    out.append(r.number)  # in investigation
    r = e.start("capa", "emma", {"title": "Calibration overdue on balance BAL-07",
                                 "description": "Found during internal audit."})
    e.fire(r.number, "assign", "quinn", {"owner": "olga"})
    e.fire(r.number, "submit_root_cause", "olga", {"root_cause_category": "equipment",
                                                   "root_cause": "Calibration reminder missed."})
    e.fire(r.number, "submit_plan", "olga", {
        "actions": [{"description": "Add balances to the calibration schedule",
                     "responsible": "olga", "due": _day(10), "done": True}],
        "effectiveness_criteria": "All balances calibrated on time for 6 months."})
    e.fire(r.number, "approve_plan", "quinn", signature=_sig("quinn"))
    e.fire(r.number, "complete_implementation", "olga",
           {"implementation_summary": "Schedule updated (CAL-SOP-3 v5)."})
    e.fire(r.number, "verify", "quentin", {"verification_evidence": "CAL-SOP-3 v5 effective."},
           signature=_sig("quentin"))
    out.append(r.number)  # effectiveness check open
    return out


def _changes(e: Engine) -> list[str]:
    out = []
    r = e.start("change_request", "olga", {
        "title": "Replace tablet press punch set", "description": "Worn punches on press P-4.",
        "justification": "Tablet weight variation trending up.", "owner": "olga"})
    out.append(r.number)
    r = e.start("change_request", "olga", {
        "title": "Update SOP-12 line clearance checklist", "owner": "olga",
        "description": "Add a label verification step at changeover.",
        "justification": "CAPA action.", "change_type": "document"})
    e.fire(r.number, "submit", "olga")
    e.fire(r.number, "submit_for_approval", "olga", {
        "classification": "minor", "quality_impact": "Reduces mix-up risk.",
        "regulatory_impact": "none", "validation_impact": "none",
        "training_impact": "read_and_understood", "implementation_plan": "Issue SOP-12 v5.",
        "target_date": _day(30),
        "affected_documents": [{"document": "SOP-12", "document_version": "5",
                                "trainee": "emma", "due": _day(40)}]})
    e.fire(r.number, "approve", "quinn", signature=_sig("quinn"))  # the process owner is next
    out.append(r.number)
    return out


def _reviews(e: Engine) -> list[str]:
    r = e.start("access_review", "sam", {
        "title": "QMS access review 2026-Q1", "system": "QMS", "period": "2026-Q1",
        "scope": "Export of role grants from the QMS on the first day of the quarter."})
    return [r.number]


def _training(e: Engine) -> list[str]:
    out = []
    r = e.start("training_assignment", "tina", {
        "title": "SOP-12 Line clearance v4", "document": "SOP-12", "document_version": "4",
        "trainee": "emma", "due_date": _day(14)})
    out.append(r.number)
    r = e.start("training_assignment", "tina", {
        "title": "SOP-3 Deviation handling v7", "document": "SOP-3", "document_version": "7",
        "trainee": "olga", "due_date": _day(7)})
    out.append(r.number)
    return out


_STORIES: list[Callable[[Engine], list[str]]] = [_deviations, _capas, _changes, _reviews,
                                                 _training]


def _day(offset: int) -> str:
    return (clock.now() + timedelta(days=offset)).date().isoformat()

