"""KPIs (workflow/kpi/, docs/kpis.md) on crafted data sets with known answers.

Records are built through the engine and time moves with workflow.clock (no sleeps). The
clock starts at T0 = 2026-03-02 09:00 UTC (tests/conftest.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import T0
from tests.factories import give_training, sign
from workflow import clock
from workflow.audit import trail as audit
from workflow.identity import users as identity
from workflow.kpi import Kpi, Period

SPRING = Period.months("2026-03", "2026-06")


def at(days: float) -> None:
    clock.set(T0 + timedelta(days=days))


def kpi(engine, viewer: str, period: Period = SPRING, **kw) -> Kpi:
    # a reader session kept open for the test's assertions (a read unit's, which checks
    # the grants' seals)
    session = engine.reader().__enter__()
    return Kpi(session, engine.registry, viewer, period, **kw)


# ------------------------------------------------------------------ record builders


def new_capa(engine, people, title="CAPA"):
    return engine.start("capa", people["emp"], {"title": title, "description": "d"}).number


def capa_to_effectiveness(engine, people, n):
    engine.fire(n, "assign", people["qa"], {"owner": people["owner"]})
    engine.fire(n, "submit_root_cause", people["owner"],
                {"root_cause_category": "method", "root_cause": "rc"})
    capa_plan_to_effectiveness(engine, people, n)


def capa_plan_to_effectiveness(engine, people, n):
    engine.fire(n, "submit_plan", people["owner"], {
        "actions": [{"description": "fix", "done": True}], "effectiveness_criteria": "c"})
    engine.fire(n, "approve_plan", people["qa"], signature=sign(people["qa"]))
    engine.fire(n, "complete_implementation", people["owner"], {"implementation_summary": "s"})
    engine.fire(n, "verify", people["qa2"], {"verification_evidence": "e"},
                signature=sign(people["qa2"]))


def capa_close(engine, people, n, reason="judged early for the data set"):
    # the data set judges effectiveness before it is due: with a reason (R-WF-14); a second
    # check after "not effective" changes the first check's values: with a reason too
    engine.fire(n, "record_effectiveness", people["qa"],
                {"effectiveness_result": "effective", "effectiveness_evidence": "ok"},
                reason=reason)
    give_training(engine, people["qa"])  # closing requires training on the CAPA SOP
    engine.fire(n, "close", people["qa"], signature=sign(people["qa"]))


def new_deviation(engine, people, title="Deviation"):
    day = clock.now().date().isoformat()
    return engine.start("deviation", people["emp"], {
        "title": title, "description": "d", "occurred_on": day, "discovered_on": day,
        "area": "Filling", "immediate_actions": "hold"}).number


def triage(engine, people, n, classification):
    minor = classification == "minor"
    engine.fire(n, "triage", people["qa"], {
        "classification": classification, "classification_rationale": "r",
        "capa_required": not minor, "investigator": people["owner"],
        **({"capa_rationale": "Isolated slip, not systemic at all."} if minor else {})})


def close_deviation(engine, people, n, classification):
    minor = classification == "minor"
    engine.fire(n, "submit_investigation", people["owner"], {
        "root_cause_category": "method", "root_cause": "rc", "impact_assessment": "none",
        "batch_disposition": "release", "capa_required": not minor})
    return engine.fire(n, "approve", people["qa2"],
                       {"classification": classification, "capa_required": not minor},
                       signature=sign(people["qa2"]))


@pytest.fixture
def org(engine, people, make_user):
    """people (conftest) plus a trainer, a user without any role, and olga as deviation and
    change owner."""
    make_user("tina", "trainer", "training_coordinator", full_name="Tina Trainer")
    make_user("otto", full_name="Otto Outsider")
    with engine.unit() as s:
        system = identity.system_user(s)
        olga = identity.get_user(s, people["owner"])
        for role in ("deviation_owner", "change_owner"):
            identity.grant_role(s, olga, role, actor=system, reason="test")
    return people


# ------------------------------------------------------------------ CAPA


@pytest.fixture
def capa_set(engine, org):
    """A closed early (20 d), B extended then closed after its original due (100 d),
    C left open past due, D cancelled. All created at T0, original due T0 + 90 d."""
    people = org
    a, b, c, d = (new_capa(engine, people, t) for t in "ABCD")
    at(1)
    engine.fire(d, "cancel", people["qa"], reason="duplicate", signature=sign(people["qa"]))
    for n in (a, b):
        capa_to_effectiveness(engine, people, n)
    at(20)
    capa_close(engine, people, a)
    at(80)
    ext = engine.request_extension(b, people["owner"], datetime(2026, 7, 31, tzinfo=UTC),
                                   "supplier delay")
    engine.decide_extension(ext, people["qa2"], True, signature=sign(people["qa2"]))
    at(100)
    capa_close(engine, people, b)
    at(105)  # 2026-06-15 09:00
    return {"A": a, "B": b, "C": c, "D": d}


def test_capa_metrics_known_answers(engine, capa_set):
    """CAPA backlog, overdue, age, closure time, on-time (current and original due), extensions."""
    k = kpi(engine, "quinn")
    m = k.metrics(["capa.open", "capa.overdue", "capa.age", "capa.closure_days", "capa.on_time",
                   "capa.on_time_original", "capa.extended"])
    assert m["capa.open"].value == 1
    assert (m["capa.overdue"].numerator, m["capa.overdue"].denominator) == (1, 1)
    assert m["capa.overdue"].status == "red"
    assert m["capa.age"].value == pytest.approx(105.0)
    assert m["capa.closure_days"].value == pytest.approx(60.0)  # median of 20 and 100
    assert m["capa.closure_days"].p90 == pytest.approx(100.0)
    # current due: A on time, C overdue (miss), B's due moved out of the period, D void
    assert (m["capa.on_time"].numerator, m["capa.on_time"].denominator) == (1, 2)
    # original due: A on time, B late against it, C miss
    assert (m["capa.on_time_original"].numerator, m["capa.on_time_original"].denominator) == (1, 3)
    assert (m["capa.extended"].numerator, m["capa.extended"].denominator) == (1, 2)


def test_drill_down_lists_exactly_the_records_behind_the_number(engine, capa_set):
    """Every number drills down to exactly its cohort (numerator and denominator)."""
    k = kpi(engine, "quinn")
    s = capa_set
    assert [r.number for r in k.drill("capa.on_time", "num")] == [s["A"]]
    assert [r.number for r in k.drill("capa.on_time")] == sorted([s["A"], s["C"]])
    assert [r.number for r in k.drill("capa.on_time_original")] == sorted([s["A"], s["B"], s["C"]])
    assert [r.number for r in k.drill("capa.overdue", "num")] == [s["C"]]
    assert [r.number for r in k.drill("capa.extended", "num")] == [s["B"]]
    rows = k.drill("capa.closure_days")
    assert {r.number: r.value for r in rows} == pytest.approx({s["A"]: 20.0, s["B"]: 100.0})
    for key in ("capa.open", "capa.overdue", "capa.on_time", "capa.extended"):
        m = k.metric(key)
        assert len(k.drill(key)) == (m.denominator if m.denominator is not None else m.numerator)
        assert len(k.drill(key, "num")) == m.numerator


def test_visibility_a_user_without_the_workflow_roles_sees_nothing(engine, capa_set):
    """R-P11-10d-2: KPIs aggregate only records the viewer may see."""
    assert kpi(engine, "otto").metric("capa.open").value == 0
    assert kpi(engine, "tina").metric("capa.closure_days").value is None
    assert kpi(engine, "otto").drill("capa.on_time") == []
    assert kpi(engine, "quinn").metric("capa.open").value == 1


def test_nothing_in_the_period(engine, capa_set):
    """An empty period gives no value (not 0 %), and an empty drill-down."""
    k = kpi(engine, "quinn", Period.months("2025-01", "2025-02"))
    m = k.metric("capa.on_time")
    assert (m.value, m.numerator, m.denominator, m.status) == (None, 0, 0, None)
    assert k.metric("capa.closure_days").value is None
    assert k.metric("capa.open").value == 0  # as of the end of Feb 2025: nothing existed
    assert k.drill("capa.closure_days") == []


def test_as_of_in_the_past_is_reproducible(engine, capa_set):
    """The number shown at the end of March can be recomputed later (as-of rules)."""
    k = kpi(engine, "quinn", Period.months("2026-03", "2026-03"))
    assert k.as_of == datetime(2026, 4, 1, tzinfo=UTC)
    assert k.metric("capa.open").value == 2  # B and C were still open then
    assert k.metric("capa.closure_days").numerator == 1  # only A closed in March


def test_reopened_capa_counts_once_and_stays_open(engine, org):
    """A CAPA sent back by 'not effective' is open again; closing later counts once with its
    whole duration."""
    people = org
    n = new_capa(engine, people, "E")
    capa_to_effectiveness(engine, people, n)
    at(10)
    engine.fire(n, "not_effective", people["qa"], {
        "effectiveness_result": "not_effective", "effectiveness_evidence": "recurred"},
        reason="recurred")
    assert kpi(engine, "quinn").metric("capa.open").value == 1
    at(30)
    capa_plan_to_effectiveness(engine, people, n)
    capa_close(engine, people, n, reason="second check")
    k = kpi(engine, "quinn")
    assert k.metric("capa.open").value == 0
    m = k.metric("capa.closure_days")
    assert (m.numerator, m.value) == (1, pytest.approx(30.0))


# ------------------------------------------------------------------ deviations


@pytest.fixture
def deviation_set(engine, org):
    people = org
    d1 = new_deviation(engine, people, "minor one")
    d2 = new_deviation(engine, people, "major one")
    at(1)
    triage(engine, people, d1, "minor")
    at(3)
    triage(engine, people, d2, "major")
    at(5)
    close_deviation(engine, people, d1, "minor")
    at(10)
    spawned = close_deviation(engine, people, d2, "major").created
    # month end: 23:30 UTC on 31 March is March (UTC time base), 00:30 on 1 April is April
    clock.set(datetime(2026, 3, 31, 23, 30, tzinfo=UTC))
    d3 = new_deviation(engine, people, "late March")
    clock.set(datetime(2026, 4, 1, 0, 30, tzinfo=UTC))
    d4 = new_deviation(engine, people, "early April")
    at(60)
    return {"d1": d1, "d2": d2, "d3": d3, "d4": d4, "capa": spawned}


def test_deviation_metrics_known_answers(engine, deviation_set):
    """Classification per month (month ends in UTC), triage milestone, closure, CAPA share."""
    s = deviation_set
    assert len(s["capa"]) == 1
    k = kpi(engine, "quinn")
    by = k.deviations_by_class()
    assert by["2026-03"] == {"minor": 1, "major": 1, "unclassified": 1}
    assert by["2026-04"] == {"unclassified": 1}
    assert by["2026-05"] == {} and by["2026-06"] == {}
    assert [r.number for r in k.drill("dev.created", month="2026-03",
                                      classification="unclassified")] == [s["d3"]]
    triage_m = k.metric("dev.triage_days")
    assert (triage_m.numerator, triage_m.value) == (2, pytest.approx(2.0))  # 1 d and 3 d
    closure = k.metric("dev.closure_days")
    assert (closure.numerator, closure.value) == (2, pytest.approx(7.5))  # 5 d and 10 d
    share = k.metric("dev.capa_share")
    assert (share.numerator, share.denominator) == (1, 2)
    assert [r.number for r in k.drill("dev.capa_share", "num")] == [s["d2"]]
    assert k.metric("dev.created").value == 4


# ------------------------------------------------------------------ change control


def cr_to_approval(engine, people, title):
    n = engine.start("change_request", people["owner"], {
        "title": title, "description": "d", "justification": "j", "change_type": "document",
        "owner": people["owner"]}).number
    engine.fire(n, "submit", people["owner"])
    engine.fire(n, "submit_for_approval", people["owner"], {
        "classification": "minor", "quality_impact": "none", "regulatory_impact": "none",
        "validation_impact": "none", "training_impact": "none", "implementation_plan": "p",
        "target_date": (clock.now() + timedelta(days=30)).date().isoformat()})
    return n


def test_change_control_metrics(engine, org):
    """Cycle time and approval time from the declared milestones; void share."""
    people = org
    ok = cr_to_approval(engine, people, "closes")
    rejected = cr_to_approval(engine, people, "rejected")
    withdrawn = cr_to_approval(engine, people, "withdrawn")
    at(4)
    engine.fire(ok, "approve", people["qa"], signature=sign(people["qa"]))
    engine.fire(ok, "approve", people["po"], signature=sign(people["po"]))
    engine.fire(rejected, "reject", people["qa"], reason="not needed")
    engine.fire(withdrawn, "withdraw", people["owner"], reason="superseded")
    at(12)
    engine.fire(ok, "complete_implementation_no_training", people["owner"],
                {"implementation_summary": "done"})
    engine.fire(ok, "verify", people["qa2"], {"verification_evidence": "ok"},
                signature=sign(people["qa2"]))
    k = kpi(engine, "quinn")
    cycle = k.metric("cr.cycle_days")
    assert (cycle.numerator, cycle.value) == (1, pytest.approx(12.0))
    approval = k.metric("cr.approval_days")
    assert (approval.numerator, approval.value) == (1, pytest.approx(4.0))
    void = k.metric("cr.void_share")
    assert (void.numerator, void.denominator) == (2, 3)
    assert [r.number for r in k.drill("cr.void_share", "num")] == sorted([rejected, withdrawn])


# ------------------------------------------------------------------ training


def assign(engine, trainee, due_days):
    due = (clock.now() + timedelta(days=due_days)).date().isoformat()
    return engine.start("training_assignment", "tina", {
        "title": "SOP", "document": "SOP-1", "document_version": "1", "trainee": trainee,
        "due_date": due}).number


def test_training_compliance_and_overdue(engine, org):
    """Compliance = completed / due (cancelled excluded); overdue = open past due."""
    people = org
    done = assign(engine, people["emp"], 5)
    late = assign(engine, people["emp"], 5)
    cancelled = assign(engine, people["emp"], 5)
    future = assign(engine, people["emp"], 60)
    at(2)
    engine.fire(done, "complete", people["emp"], signature=sign(people["emp"]))
    engine.fire(done, "verify", "tina", signature=sign("tina"))
    engine.fire(cancelled, "cancel", "tina", reason="not applicable")
    at(10)
    k = kpi(engine, "tina")
    c = k.metric("trn.compliance")
    assert (c.numerator, c.denominator) == (1, 2)
    assert c.status == "red"
    assert k.metric("trn.overdue").value == 1
    assert [r.number for r in k.drill("trn.overdue")] == [late]
    assert future not in [r.number for r in k.drill("trn.compliance")]
    assert k.training_by_document() == [("SOP-1", 1, 2)]


# ------------------------------------------------------------------ access reviews


def test_access_review_on_time_and_grants_revoked(engine, org, make_user):
    """R-A11-12-3: reviews completed on time and grants revoked, for the KPI report."""
    people = org
    make_user("sam", "system_owner", full_name="Sam Owner")
    make_user("aaron", "access_admin", full_name="Aaron Admin")
    make_user("ivy", "isms", full_name="Ivy Isms")
    n = engine.start("access_review", "sam", {"title": "LIMS Q1", "system": "LIMS",
                                              "period": "2026-Q1"}).number
    at(3)
    engine.fire(n, "attest", "sam", {"grants": [
        {"user": people["emp"], "role": "analyst", "decision": "keep"},
        {"user": people["owner"], "role": "admin", "decision": "revoke", "comment": "left"},
        {"user": people["po"], "role": "admin", "decision": "revoke", "comment": "moved"}]},
        signature=sign("sam"))
    engine.fire(n, "confirm_revocations", "aaron", {"revocation_notes": "ticket 1"},
                signature=sign("aaron"))
    engine.fire(n, "sign_off", "ivy", signature=sign("ivy"))
    late = engine.start("access_review", "sam", {"title": "ERP Q1", "system": "ERP",
                                                 "period": "2026-Q1"}).number
    at(40)  # the ERP review (due 30 days after it started) is still open: a miss
    k = kpi(engine, "ivy")
    on_time = k.metric("ar.on_time")
    assert (on_time.numerator, on_time.denominator) == (1, 2)
    assert [r.number for r in k.drill("ar.on_time", "num")] == [n]
    assert late in [r.number for r in k.drill("ar.on_time")]
    revoked = k.metric("ar.revoked")
    assert (revoked.value, revoked.denominator) == (2, 1)


# ------------------------------------------------------------------ security and integrity


def test_security_events_from_the_system_chain(engine, org):
    """R-A11-12-1 R-P11-300d-1: failed logins, lockouts and failed signatures are counted from
    the chained system audit events, per month."""
    with engine.unit() as s:
        u = identity.get_user(s, "emma")
        for action in ("login_failed", "login_failed", "account_locked", "signature_failed"):
            audit.system_event(s, at=clock.now(), actor=u, action=action,
                               changes={"username": "emma", "detail": "wrong password"})
    at(40)
    with engine.unit() as s:
        audit.system_event(s, at=clock.now(), actor=None, action="login_failed",
                           changes={"username": "nobody", "detail": "unknown username"})
    k = kpi(engine, "quinn")
    assert k.metric("sec.failed_logins").value == 3
    assert k.metric("sec.lockouts").value == 1
    assert k.metric("sec.signature_failures").value == 1
    by = k.security_by_month()
    assert by["2026-03"]["login_failed"] == 2 and by["2026-04"]["login_failed"] == 1
    assert [e.username for e in k.drill("sec.failed_logins")] == ["emma", "emma", "nobody"]


def test_verification_result_is_stored_not_recomputed(engine, org):
    """R-A11-7-2 R-P11-10a-2: the dashboard shows the last stored verification result."""
    from workflow.audit.integrity import store_verification, verify

    assert kpi(engine, "quinn").last_verification() is None
    with engine.unit() as s:
        report = verify(s, engine.signing_key)
        store_verification(s, report, clock.now(), "test")
    run = kpi(engine, "quinn").last_verification()
    assert run.status == "done" and run.result["ok"] is True and run.result["events"] > 0


# ------------------------------------------------------------------ metrics added with issue 6


def test_capa_days_late_at_closure_against_current_and_original_due(engine, capa_set):
    """Days late at closure: A closed early, B closed 10 days after its original due but
    before its extended (current) due; the mean is over the late ones only."""
    k = kpi(engine, "quinn")
    cur = k.metric("capa.days_late")
    assert (cur.numerator, cur.denominator, cur.value) == (0, 2, None)
    orig = k.metric("capa.days_late_original")
    assert (orig.numerator, orig.denominator) == (1, 2)
    assert orig.value == pytest.approx(10.0)
    assert [r.number for r in k.drill("capa.days_late_original", "num")] == [capa_set["B"]]
    assert kpi(engine, "quinn", Period.months("2025-01", "2025-02")).metric(
        "capa.days_late_original").denominator == 0


def test_capa_effectiveness_check_pass_rate(engine, org):
    """Each check decided in the period counts: E failed once then passed, F passed, G is
    still waiting for its check (no verdict yet)."""
    people = org
    e, f, g = (new_capa(engine, people, t) for t in "EFG")
    for n in (e, f, g):
        capa_to_effectiveness(engine, people, n)
    at(10)
    engine.fire(e, "not_effective", people["qa"], {
        "effectiveness_result": "not_effective", "effectiveness_evidence": "recurred"},
        reason="recurred")
    at(30)
    capa_plan_to_effectiveness(engine, people, e)
    for n in (e, f):
        capa_close(engine, people, n, reason="second check")
    k = kpi(engine, "quinn")
    m = k.metric("capa.effectiveness")
    assert (m.numerator, m.denominator) == (2, 3)
    assert m.value == pytest.approx(2 / 3)
    assert sorted(r.number for r in k.drill("capa.effectiveness", "num")) == sorted([e, f])
    assert g not in [r.number for r in k.drill("capa.effectiveness")]
    # a period before any verdict: nothing to rate
    assert kpi(engine, "quinn", Period.months("2026-01", "2026-02")).metric(
        "capa.effectiveness").value is None
    # someone without a CAPA role sees no checks
    assert kpi(engine, "otto").metric("capa.effectiveness").denominator == 0


def test_training_compliance_per_role(engine, org):
    """Per role the trainee holds at the as-of time: emma (employee) 1 of 2 done, olga
    (capa_owner, change_owner, deviation_owner, employee) 0 of 1."""
    people = org
    done = assign(engine, people["emp"], 5)
    assign(engine, people["emp"], 5)
    assign(engine, people["owner"], 5)
    assign(engine, people["owner"], 60)  # not due yet
    at(2)
    engine.fire(done, "complete", people["emp"], signature=sign(people["emp"]))
    engine.fire(done, "verify", "tina", signature=sign("tina"))
    at(10)
    assert kpi(engine, "tina").training_by_role() == [
        ("capa_owner", 0, 1), ("change_owner", 0, 1), ("deviation_owner", 0, 1),
        ("employee", 1, 3)]


def test_active_users_not_covered_by_an_access_review(engine, org, make_user):
    """R-A11-12-3: active users holding a role whom no review of the period lists; a cancelled
    review and a review of an earlier period cover nobody; users without roles and
    deactivated users are not counted."""
    people = org
    clock.set(T0 - timedelta(days=60))  # January: before the period
    # (a role counts from its grant on: Sam holds his since January)
    make_user("sam", "system_owner", full_name="Sam Owner")
    make_user("gone", "employee", full_name="Gone User")
    with engine.unit() as s:
        identity.deactivate_user(s, identity.get_user(s, "gone"),
                                 actor=identity.system_user(s), reason="left")
    engine.start("access_review", "sam", {"title": "Old", "system": "QMS", "period": "2025-Q4",
                                          "grants": [{"user": people["po"], "role": "x"}]})
    at(1)
    engine.start("access_review", "sam", {"title": "QMS", "system": "QMS", "period": "2026-Q1",
                                          "grants": [{"user": people["emp"], "role": "employee"},
                                                     {"user": "OLGA", "role": "capa_owner"}]})
    void = engine.start("access_review", "sam", {
        "title": "LIMS", "system": "LIMS", "period": "2026-Q1",
        "grants": [{"user": people["qa"], "role": "analyst"}]}).number
    engine.fire(void, "cancel", people["qa"], reason="wrong system")
    at(5)
    k = kpi(engine, "quinn")
    m = k.metric("ar.uncovered")
    # with a role: emma quinn quentin olga paul tina sam (otto has none, gone is inactive)
    assert (m.numerator, m.denominator) == (5, 7)
    assert m.value == 5
    assert [r.username for r in k.drill("ar.uncovered", "num")] == [
        "paul", "quentin", "quinn", "sam", "tina"]
    assert kpi(engine, "quinn", Period.months("2026-04", "2026-06")).metric(
        "ar.uncovered").numerator == 7


def test_totp_enrolment_share_of_users_who_require_it(engine, org):
    """R-P11-300d-1: of the active users whose roles require a second factor (qa here), the
    share enrolled: quinn enrolled, quentin not."""
    import pyotp

    from workflow.identity.policy import Policy
    from workflow.identity.totp import begin_totp_enrolment, confirm_totp_enrolment

    policy = Policy(totp_required_roles=("qa",))
    e = begin_totp_enrolment(engine, "quinn", policy)
    confirm_totp_enrolment(engine, "quinn", pyotp.TOTP(e.secret).at(clock.now()))
    k = kpi(engine, "quinn", policy=policy)
    m = k.metric("sec.totp_enrolled")
    assert (m.numerator, m.denominator) == (1, 2)
    assert m.value == pytest.approx(0.5)
    assert [r.username for r in k.drill("sec.totp_enrolled", "num")] == ["quinn"]
    assert [r.username for r in k.drill("sec.totp_enrolled")] == ["quentin", "quinn"]
    # before the enrolment (as of an earlier time) nobody was enrolled
    early = kpi(engine, "quinn", policy=policy, as_of=T0 - timedelta(days=1))
    assert early.metric("sec.totp_enrolled").numerator == 0


def test_capa_recurrence_after_closure(engine, org):
    """CAPA effectiveness outcome: a CAPA raised by a deviation recurs when a later deviation
    is recorded as a recurrence of that deviation after the CAPA closed."""
    people = org
    d0 = new_deviation(engine, people, "Label mix-up")
    triage(engine, people, d0, "major")
    capa = close_deviation(engine, people, d0, "major").created[0]
    other = new_capa(engine, people, "Not from a deviation")
    for n in (capa, other):
        capa_to_effectiveness(engine, people, n)
    at(20)
    for n in (capa, other):
        capa_close(engine, people, n)
    at(40)  # a new deviation, linked as a recurrence of the first one
    d1 = new_deviation(engine, people, "Label mix-up again")
    triage(engine, people, d1, "major")
    engine.fire(d1, "submit_investigation", people["owner"], {
        "root_cause_category": "method", "root_cause": "rc", "impact_assessment": "none",
        "batch_disposition": "release", "capa_required": True, "similar_deviations": [d0]})
    m = kpi(engine, people["qa"]).metric("capa.recurrence")
    assert (m.numerator, m.denominator) == (1, 1)  # the CAPA without a deviation is left out
    assert [r.number for r in kpi(engine, people["qa"]).drill("capa.recurrence", "num")] == [capa]
    early = kpi(engine, people["qa"], as_of=T0 + timedelta(days=30)).metric("capa.recurrence")
    assert (early.numerator, early.denominator) == (0, 1)


def test_training_median_days_to_complete(engine, org):
    """Median days from assignment to completion, over assignments completed in the period."""
    people = org
    fast, slow = assign(engine, people["emp"], 30), assign(engine, people["emp"], 30)
    at(2)
    for n in (fast,):
        engine.fire(n, "complete", people["emp"], signature=sign(people["emp"]))
        engine.fire(n, "verify", "tina", signature=sign("tina"))
    at(10)
    engine.fire(slow, "complete", people["emp"], signature=sign(people["emp"]))
    engine.fire(slow, "verify", "tina", signature=sign("tina"))
    m = kpi(engine, "tina").metric("trn.days_to_complete")
    assert m.denominator == 2 and m.value == pytest.approx(6.0)
