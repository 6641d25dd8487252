"""Demo users and records for ``qms init --demo`` (and ``make run``).

Everything goes through the engine, exactly as a person would do it: the demo records have
real audit trails and signatures. Running it twice adds nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, select

from workflow import clock, demo_secops, demo_training
from workflow.db.models import Record, RecordLink
from workflow.engine.core import Engine
from workflow.identity import enablement, passwords, profile
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.signatures.mac import VouchedSignature
from workflow.validation import gap
from workflow.validation.catalogue import CatalogueError

#: the demo users' password (printed by `make run`); never use demo data in production
DEMO_PASSWORD = "Quality-Demo-2026!"

#: how long before `qms init --demo` the demo people were created and granted their roles
DEMO_HISTORY = timedelta(days=180)

#: username, printed name, roles
DEMO_USERS: list[tuple[str, str, list[str]]] = [
    ("emma", "Emma Employee", ["employee"]),
    ("quinn", "Quinn Quality", ["qa", "employee"]),
    ("quentin", "Quentin Quality", ["qa", "trainer", "employee"]),
    ("olga", "Olga Owner", ["capa_owner", "deviation_owner", "change_owner", "risk_owner",
                            "employee"]),
    ("paul", "Paul Process-Owner", ["process_owner", "employee"]),
    ("sam", "Sam System-Owner", ["system_owner", "employee"]),
    ("ivy", "Ivy ISMS", ["isms", "employee"]),
    ("aaron", "Aaron Access-Admin", ["access_admin", "employee"]),
    ("tina", "Tina Trainer", ["trainer", "training_coordinator", "employee"]),
    ("ada", "Ada Administrator", ["admin"]),
    ("alex", "Alex Auditor", ["auditor", "employee"]),
    ("tom", "Tom Top-Management", ["top_management", "employee"]),
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
        made_users = []
        # the demo organisation has held its roles for half a year (so demo records can
        # show history, e.g. a risk acceptance given months ago that has expired since)
        clock.advance(-DEMO_HISTORY)
        try:
            for username, name, roles in DEMO_USERS:
                u = identity.create_user(s, username, name, email=f"{username}@demo.example",
                                         actor=system, reason="demo data")
                for r in roles:
                    identity.grant_role(s, u, r, actor=system, reason="demo data")
                # demo people may sign at once (a real person's identity is verified by an
                # administrator and they accept the e-signature policy themselves)
                enablement.enable_for_system(s, u, reason="demo data")
                made_users.append(u)
        finally:
            clock.advance(DEMO_HISTORY)
        for u in made_users:  # set now: not expired
            passwords.set_password(s, u, DEMO_PASSWORD, actor=system, policy=Policy.from_settings(),
                                   reason="demo data")
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


def _audits(e: Engine) -> list[str]:
    """A QA-approved audit programme of this year: its internal audit of Production done and
    reported (a minor finding closed, a major one in corrective action with its CAPA), its
    supplier audit still planned (the scheduler opens it on its planned date)."""
    for username, dept in (("alex", "Quality Assurance"), ("quinn", "Quality Assurance"),
                           ("quentin", "Quality Assurance"), ("olga", "Production"),
                           ("emma", "Production"), ("ivy", "IT")):
        profile.update_profile(e, username, actor=identity.SYSTEM_USERNAME, department=dept,
                               reason="demo data: organisation chart")
    year = clock.now().year
    start = max(_day(-40), f"{year}-01-01")
    supplier_start = min(_day(12), f"{year}-12-31")
    p = e.start("audit_programme", "quinn", {
        "title": f"Audit programme {year}", "year": year,
        "description": "Risk-based: GMP areas yearly, critical suppliers every two years.",
        "planned_audits": [
            {"audit_type": "internal", "scope": "Line clearance and batch record review",
             "standard": "EU GMP Chapter 5; ICH Q10", "auditee_area": "Production",
             "lead_auditor": "alex", "planned_start": start, "planned_end": start},
            {"audit_type": "supplier", "scope": "Hosting of the QMS: ISMS, backups, access",
             "standard": "ISO/IEC 27001:2022; EU GMP Annex 11 §3", "supplier": "CloudHost Ltd",
             "lead_auditor": "alex", "planned_start": supplier_start}]})
    e.fire(p.number, "submit", "quinn")
    r = e.fire(p.number, "approve", "quentin", {"approval_comment": "Approved as planned."},
               signature=_sig("quentin"))
    internal, supplier = r.created
    e.fire(internal, "open_preparation", "alex")
    e.fire(internal, "start_conduct", "alex", {
        "audit_plan": "Opening meeting; review of 10 batch records; line walk; closing meeting.",
        "audit_team": [{"auditor": "ivy", "role": "Data integrity"}]})
    e.fire(internal, "complete_conduct", "alex", {
        "conduct_summary": "10 batch records and filling line 3 examined with the shift lead.",
        "findings": [
            {"title": "Line clearance not second-person verified", "classification": "major",
             "requirement": "EU GMP Chapter 5", "clause": "5.35", "auditee": "olga",
             "description": "3 of 10 batch records lack the second signature on line "
                            "clearance.", "evidence": "Batch records 26-014, 26-017, 26-021"},
            {"title": "Logbook index lists a retired mixer", "classification": "minor",
             "requirement": "EU GMP Chapter 4", "clause": "4.31", "auditee": "olga",
             "description": "Equipment logbook index out of date.",
             "evidence": "Logbook LB-7, page 1"}]})
    e.fire(internal, "issue_report", "alex", {
        "report_summary": "Line clearance practice needs a CAPA; documentation otherwise good.",
        "conclusion": "conforming_with_findings"}, signature=_sig("alex"))
    major, minor = _findings(e, internal)
    e.fire(minor, "respond", "olga", {"response": "Index updated; mixer removed."})
    e.fire(minor, "accept_and_close", "alex", {"response_review": "Accepted.",
                                               "closure_evidence": "LB-7 index v2 seen."},
           signature=_sig("alex"))
    e.fire(major, "respond", "olga", {"capa_required": True, "response":
                                      "SOP-12 allows one signature; revise it and retrain."})
    r = e.fire(major, "accept_with_capa", "alex", {"response_review": "Root cause plausible."})
    return [p.number, internal, supplier, major, minor, *r.created]


def _findings(e: Engine, audit: str) -> list[str]:
    with e.reader() as s:
        parent = s.execute(select(Record.id).where(Record.number == audit)).scalar_one()
        return list(s.execute(
            select(Record.number).join(RecordLink, RecordLink.source_id == Record.id)
            .where(RecordLink.target_id == parent, RecordLink.kind == "spawned_by")
            .order_by(Record.id)).scalars())


def _systems(e: Engine, *words: str) -> list[str]:
    """The inventory entries (SYS-...) whose name contains one of ``words``, else any."""
    with e.reader() as s:
        rows = s.execute(select(Record.number, Record.title).where(
            Record.workflow_key == "system_inventory").order_by(Record.id)).all()
    hits = [n for n, t in rows if any(w.lower() in (t or "").lower() for w in words)]
    return hits[:1] or [n for n, _ in rows][:1]


def _incidents(e: Engine) -> list[str]:
    """Security incidents: one closed with its linked CAPA, one affecting GxP data in
    containment (its deviation raised), one personal data breach with the 72-hour clock
    running, and one opened by the security-event job as a draft for ISMS."""
    out: list[str] = []
    now = clock.now().replace(second=0, microsecond=0)
    lims, cds, hr = _systems(e, "LIMS"), _systems(e, "chromatograph", "CDS"), _systems(e, "ERP")
    if not lims:
        return out  # no inventory: incidents name their affected systems from it

    def triage(number: str, hours_ago: int, **values: object) -> None:
        e.fire(number, "triage", "ivy", {
            "occurred_at": (now - timedelta(hours=hours_ago)).isoformat(),
            "aware_at": (now - timedelta(hours=max(hours_ago - 3, 0))).isoformat(),
            "handler": "olga", **values})

    r = e.start("security_incident", "emma", {
        "title": "Phishing: LIMS credentials entered on a fake login page",
        "description": "A mail 'invoice overdue' linked to a page that looked like the LIMS "
                       "login; I typed my user name and password.",
        "reporter_actions": "Told the service desk; changed my password."})
    triage(r.number, 30, severity="high", category="account_compromise",
           affected_systems=lims, gxp_data_affected=False, personal_data_affected=False,
           triage_rationale="One LIMS account; no GxP data changed in the session log.")
    e.fire(r.number, "contained", "olga", {
        "containment_actions": "Account locked, sessions ended, phishing mail purged.",
        "evidence_collected": "Mail headers and proxy logs in case folder SEC-2026-014."})
    e.fire(r.number, "recovered", "olga", {
        "eradication_actions": "Password reset; phishing domain blocked at the proxy.",
        "recovery_actions": "Account re-enabled after identity check."})
    e.fire(r.number, "close", "ivy", {
        "root_cause": "The LIMS web login had no second factor.",
        "lessons_learned": "MFA on every externally reachable login; phishing drill."},
        signature=_sig("ivy"))
    out.append(r.number)  # closed; its CAPA is open for QA
    r = e.start("security_incident", "emma", {
        "title": "Ransomware note on the chromatography workstation",
        "description": "The CDS acquisition PC in QC lab 2 shows a ransom note.",
        "reporter_actions": "Pulled the network cable; did not switch the PC off."})
    triage(r.number, 4, severity="critical", category="malware", affected_systems=cds,
           gxp_data_affected=True, personal_data_affected=False,
           triage_rationale="Raw data of running stability tests may be encrypted.")
    out.append(r.number)  # in containment; its deviation is with QA
    r = e.start("security_incident", "olga", {
        "title": "Laptop with an HR export stolen from a car",
        "description": "Unencrypted spreadsheet of training records with staff names."})
    triage(r.number, 20, severity="medium", category="data_loss", affected_systems=hr,
           gxp_data_affected=False, personal_data_affected=True,
           triage_rationale="Personal data of 40 employees; disk not encrypted.")
    out.append(r.number)  # in containment; its breach notification's 72-hour clock runs
    # as the scheduled job security_event_incidents opens one (the events named are examples,
    # not events of this demo's audit trail)
    with e.unit() as s:
        draft = e.start_as_system(s, "security_incident", {
            "title": "Lockout storm: 6 account lockouts (4 accounts) in the last hour",
            "description": "Opened automatically by scheduled job security_event_incidents "
                           "(cause lockout_storm). Demo data: the lockouts it lists are "
                           "examples, not events of this demo's audit trail.",
            "occurred_at": (now - timedelta(minutes=50)).isoformat()},
            reason="demo data: as the scheduled job security_event_incidents opens it")
        out.append(draft.number)
    return out


#: number, title, type, owner, the versions' change summaries (the last one's fate below),
#: review interval (months)
_DOCUMENTS = [
    ("SOP-CAPA-001", "CAPA management", "sop", "olga",
     ["First issue.", "Effectiveness checks made mandatory for major CAPAs."], 24),
    ("SOP-DEV-001", "Deviation handling", "sop", "olga",
     ["First issue.", "Triage within one working day; classification rationale required."], 24),
    ("POL-IS-001", "Information security policy", "policy", "ivy", ["First issue."], 24),
    ("SOP-IT-002", "Access control procedure", "sop", "sam", ["First issue."], 24),
    ("POL-ES-001", "Electronic signature policy", "policy", "paul", ["First issue."], 6),
]


def _document_file(number: str, title: str, version: int, summary: str) -> bytes:
    """A one-page PDF standing in for the document's content."""
    import io

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    buf = io.BytesIO()
    c = Canvas(buf, pagesize=A4)
    c.setFont("Helvetica-Bold", 16)
    c.drawString(60, 780, f"{number} {title}")
    c.setFont("Helvetica", 11)
    for i, line in enumerate([f"Version {version}", "", "Purpose and scope: demo content.",
                              f"Change summary: {summary}"]):
        c.drawString(60, 750 - 16 * i, line)
    c.save()
    return buf.getvalue()


def _document_version(e: Engine, number: str, title: str, doc_type: str, owner: str,
                      version: int, summary: str, months: int, *, effective_in: int | None,
                      review_only: bool = False) -> str:
    """A version through draft and review; approved (effective in ``effective_in`` days) unless
    None; ``review_only``: left in review."""
    from workflow.queries import attachments

    r = e.start("controlled_document", owner, {
        "title": title, "doc_number": number, "doc_type": doc_type, "version": version,
        "owner": owner, "review_interval_months": months})
    f = attachments.upload(e, owner, f"{number}-v{version}.pdf",
                           _document_file(number, title, version, summary))
    e.fire(r.number, "submit_for_review", owner, {"change_summary": summary, "file": f,
                                                  "reviewers": ["quentin"]})
    if review_only:
        return r.number
    e.fire(r.number, "complete_review", "quentin", {"review_comment": "Reviewed, fine."},
           signature=_sig("quentin"))
    e.fire(r.number, "approve", "dana", {"effective_date": _day(effective_in or 30)},
           signature=_sig("dana"))
    e.fire(r.number, "approve", owner, signature=_sig(owner))
    return r.number


def _documents(e: Engine) -> list[str]:
    """Controlled documents with a history: first versions approved about seven months ago and
    effective since; the CAPA SOP's version 2 effective for six weeks (version 1 superseded);
    the deviation SOP's version 2 in review; the access-control procedure approved and waiting
    for its effective date; the e-signature policy (6-month review) due for its periodic
    review. The clock is moved back for the history and forward again (timers fire as they
    would have); Dana (document-control QA) approves with the owners."""
    out: list[str] = []
    moved = timedelta(0)

    def shift(days: int) -> None:
        nonlocal moved
        clock.advance(timedelta(days=days))
        moved += timedelta(days=days)

    shift(-220)
    try:
        # the document owners, the reviewer and the document-control QA as of then (a role
        # held today was not held then: grants count from their time)
        with e.unit() as s:
            system = identity.system_user(s)
            dana = identity.create_user(s, "dana", "Dana Document-Control", actor=system,
                                        email="dana@demo.example", reason="demo data")
            enablement.enable_for_system(s, dana, reason="demo data")
            for username, role in (("dana", "qa"), ("dana", "employee"),
                                   ("olga", "document_owner"), ("ivy", "document_owner"),
                                   ("sam", "document_owner"), ("paul", "document_owner"),
                                   ("quentin", "reviewer")):
                identity.grant_role(s, identity.get_user(s, username), role, actor=system,
                                    reason="demo data: document control")
        for number, title, doc_type, owner, summaries, months in _DOCUMENTS:
            if number == "SOP-IT-002":
                continue  # approved today, below
            out.append(_document_version(e, number, title, doc_type, owner, 1, summaries[0],
                                         months, effective_in=15))
        shift(16)
        e.run_due_timers()
        shift(140)
        capa_sop = _DOCUMENTS[0]
        out.append(_document_version(e, *capa_sop[:4], 2, capa_sop[4][1], capa_sop[5],
                                     effective_in=15))
        shift(16)
        e.run_due_timers()
    finally:
        clock.advance(-moved)
    with e.unit() as s:
        passwords.set_password(s, identity.get_user(s, "dana"), DEMO_PASSWORD,
                               actor=identity.system_user(s), policy=Policy.from_settings(),
                               reason="demo data")
    e.run_due_timers()  # what fell due meanwhile: the e-signature policy's periodic review
    dev_sop = _DOCUMENTS[1]
    out.append(_document_version(e, *dev_sop[:4], 2, dev_sop[4][1], dev_sop[5],
                                 effective_in=None, review_only=True))
    access = _DOCUMENTS[3]
    out.append(_document_version(e, *access[:4], 1, access[4][0], access[5], effective_in=20))
    return out


#: the demo's risk assessment of the QMS itself: hazard, cause, effect, S, O, D, treatment
QMS_RISKS = [
    ("Privileged account shared by administrators", "Convenience during upgrades",
     "Changes cannot be attributed to a person", 5, 3, 4, "mitigate"),
    ("Backups never restored in a test", "No restore procedure", "Records lost after a "
     "disk failure", 4, 3, 4, "mitigate"),
    ("Audit-trail review skipped for critical records", "Review not scheduled",
     "Undetected data changes", 4, 2, 3, "mitigate"),
    ("Users sign without opening the record", "Inbox shortcuts", "Approval without review",
     3, 2, 3, "accept"),
    ("Local time shown without zone", "Browser settings", "Dates misread in reports",
     2, 2, 2, "accept"),
]


def _risk(e: Engine) -> list[str]:
    """A risk assessment of the QMS itself (approved, its CAPAs created), a Part 11 /
    Annex 11 gap analysis partly done and a management review with its frozen snapshot."""
    risks = [{"hazard": h, "cause": c, "effect": ef, "severity": sv, "occurrence": o,
              "detection": d} for h, c, ef, sv, o, d, _ in QMS_RISKS]
    ra = e.start("risk_assessment", "olga", {
        "title": "Risk assessment of the QMS software", "subject_type": "qms",
        "scope": "The eQMS: access, audit trail, signatures, backups, time.",
        "owner": "olga", "risks": risks}).number
    e.fire(ra, "submit", "olga")
    rows = e.get(ra).data["risks"]
    for row, (*_, treatment) in zip(rows, QMS_RISKS, strict=True):
        row.update(treatment=treatment, mitigation="Accepted: controlled by SOP and training"
                   if treatment == "accept" else "Technical control and SOP update",
                   **({"due": _day(60)} if treatment == "mitigate" else {}))
    e.fire(ra, "submit_plan", "olga", {"risks": rows})
    r = e.fire(ra, "approve", "quinn", {"review_comments": "Treatments adequate."},
               signature=_sig("quinn"))
    out = [ra, *r.created]
    try:
        g = gap.start(e, "olga", "Part 11 / Annex 11 gap analysis", ["part11", "annex11"])
    except (OSError, CatalogueError):  # no catalogue (an installed wheel without docs/)
        g = None
    if g is not None:
        rows = e.get(g.number).data["requirements"]
        for i, row in enumerate(rows[:12]):
            row["status"] = "met"
            if i in (3, 7):
                row.update(status="partly" if i == 3 else "not_met", risk="high" if i == 7
                           else "medium", gap="Procedure exists but is not followed "
                           "consistently" if i == 3 else "No periodic restore test",
                           capa=r.created[1] if i == 7 else None)
        e.fire(g.number, "save_progress", "olga",
               {"requirements": [{k: v for k, v in x.items() if v is not None} for x in rows]})
        out.append(g.number)
    # the current half-year, so that its snapshot shows the demo's own records
    today = clock.now().date()
    first, last = (f"{today.year}-01-01", f"{today.year}-06-30") if today.month <= 6 \
        else (f"{today.year}-07-01", f"{today.year}-12-31")
    mr = e.start("management_review", "quinn", {
        "title": f"Management review {first[:4]}-H{1 if first[5:7] == '01' else 2}",
        "period_from": first, "period_to": last}).number
    e.fire(mr, "hold_meeting", "quinn", {"meeting_date": _day(0),
                                         "attendees": ["tom", "quinn", "olga"]})
    e.fire(mr, "approve", "tom", {
        "minutes": "KPIs, open high risks and the audit programme reviewed. The shared "
                   "administrator account is the top risk.",
        "decisions": "The QMS remains suitable and effective; ISMS resources for backups.",
        "actions": [{"description": "Restore test of the QMS backup", "type": "action",
                     "owner": "olga", "due": _day(30)},
                    {"description": "Named administrator accounts", "type": "capa",
                     "owner": "olga"}]}, signature=_sig("tom"))
    r = e.fire(mr, "approve", "quinn", signature=_sig("quinn"))
    return [*out, mr, *r.created]


_STORIES: list[Callable[[Engine], list[str]]] = [_deviations, _capas, _changes, _reviews,
                                                 _training, _audits,
                                                 # inventory and vulnerabilities (issue 20),
                                                 # before the incidents that name systems
                                                 demo_secops.seed, _incidents, _documents,
                                                 # the training matrix (issue 19): curricula on
                                                 # the documents, people in each training state
                                                 demo_training.seed,
                                                 # risks and the management review last: its
                                                 # snapshot freezes the demo's own figures
                                                 _risk]


def _day(offset: int) -> str:
    return (clock.now() + timedelta(days=offset)).date().isoformat()


