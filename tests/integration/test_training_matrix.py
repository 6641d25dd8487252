"""The training matrix (issue 19 items 3-4): curricula per role, assignments created for
exactly the people who need them when a document version is approved and when a person gains
a role, cancelled when they lose it, and the training gate accepting only current training on
the effective version. The documents here are records of a small test workflow declaring the
``document`` capability (the engine never names the shipped one); the shipped controlled
document is exercised end to end in test_training_documents.py. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.factories import sign
from workflow import clock
from workflow.db.models import AuditEvent, Record, RecordLink
from workflow.errors import TrainingRequired, ValidationFailed
from workflow.identity import profile
from workflow.identity import users as identity
from workflow.identity.users import SYSTEM_USERNAME
from workflow.spec.load import load_text
from workflow.training import matrix as tm

DOC = """\
key: test_doc
title: Test document
prefix: TDOC
capabilities:
  document: {number: doc_number, version: version, title: title, effective_state: effective,
             effective_date: effective_date, retraining_days: retraining_days}
roles:
  qa: Quality Assurance
fields:
  title: {type: string}
  doc_number: {type: string}
  version: {type: integer}
  effective_date: {type: date}
  retraining_days: {type: integer}
start:
  roles: [qa]
  edits: [title, doc_number, version, retraining_days]
  requires: [title, doc_number, version]
states:
  draft: {initial: true, owner: qa}
  approved:
    owner: qa
    on_enter:
      - assign_training: {}
  effective: {owner: qa}
  superseded: {final: true, outcome: done}
transitions:
  - {name: approve, from: draft, to: approved, roles: [qa], edits: [effective_date],
     requires: [effective_date]}
  - {name: make_effective, from: approved, to: effective, roles: [qa]}
  - {name: supersede, from: effective, to: superseded, roles: [qa], reason_required: true}
"""

GATED = """\
key: capa_like
title: Gated step
prefix: GATE
roles:
  qa: Quality Assurance
fields:
  title: {type: string}
start:
  roles: [qa]
  edits: [title]
  requires: [title]
states:
  open: {initial: true, owner: qa}
  closed: {final: true, outcome: done}
transitions:
  - name: close
    from: open
    to: closed
    roles: [qa]
    training: [{document: SOP-CAPA-001}]
"""


def day(days: int) -> str:
    return (clock.now() + timedelta(days=days)).date().isoformat()


@pytest.fixture
def org(engine, make_user):
    with engine.unit() as s:
        engine.registry.publish(s, load_text(DOC, "test_doc.yaml"), identity.system_user(s))
        engine.registry.publish(s, load_text(GATED, "capa_like.yaml"), identity.system_user(s))
    return {
        "tina": make_user("tina", "training_coordinator", "trainer", "employee"),
        "trent": make_user("trent", "trainer", "employee"),
        "quinn": make_user("quinn", "qa", "employee"),
        "carl": make_user("carl", "capa_owner", "employee"),
        "cora": make_user("cora", "capa_owner", "deviation_owner", "employee"),
        "emma": make_user("emma", "employee"),
    }


def doc_version(engine, number, version, *, effective_in=None, retraining=None):
    """A document version, approved (effective_in days ahead) and made effective now when
    ``effective_in`` is 0; returns its record number."""
    data = {"title": f"{number} title", "doc_number": number, "version": version}
    if retraining:
        data["retraining_days"] = retraining
    n = engine.start("test_doc", "quinn", data).number
    if effective_in is not None:
        engine.fire(n, "approve", "quinn", {"effective_date": day(effective_in)})
        if effective_in == 0:
            engine.fire(n, "make_effective", "quinn")
    return n


def curriculum(engine, role, *docs, due_days=30):
    n = engine.start("curriculum", "tina", {
        "title": f"{role} curriculum", "role": role, "due_days": due_days,
        "documents": [{"document": d, "kind": k} for d, k in docs]}).number
    engine.fire(n, "submit", "tina")
    engine.fire(n, "approve", "quinn", signature=sign("quinn"))
    return n


def assignments(engine, document=None, open_only=True):
    """(trainee, document, version) of the training assignments."""
    with engine.reader() as s:
        q = select(Record).where(Record.workflow_key == "training_assignment")
        if open_only:
            q = q.where(Record.closed_at.is_(None))
        rows = s.execute(q.order_by(Record.id)).scalars().all()
        return [(r.data["trainee"], r.data["document"], r.data["document_version"], r)
                for r in rows if document is None or r.data["document"] == document]


def complete(engine, number, trainee):
    engine.fire(number, "complete", trainee, signature=sign(trainee))
    engine.fire(number, "verify", "trent", signature=sign("trent"))


def test_approval_assigns_the_version_to_exactly_the_people_who_need_it(engine, org):
    """R-TRN-1 R-TRN-3 R-TRN-4 R-TRN-5: curricula are signed records; approving a version
    (before its effective date) assigns it,
    in the same unit of work, to every holder of a role whose active curriculum lists the
    document - nobody else - due before the effective date, linked to the version record
    (spawned_by) and naming the curriculum; the assessment kind asks for an assessment."""
    doc_version(engine, "SOP-CAPA-001", 1, effective_in=0)  # in force before the curricula
    cur_capa = curriculum(engine, "capa_owner", ("SOP-CAPA-001", "read_and_understood"))
    curriculum(engine, "qa", ("SOP-CAPA-001", "assessment"), due_days=60)
    # activating the curricula assigned the effective version to the holders
    assert sorted((t, d, v) for t, d, v, _ in assignments(engine)) == [
        ("carl", "SOP-CAPA-001", "1"), ("cora", "SOP-CAPA-001", "1"),
        ("quinn", "SOP-CAPA-001", "1")]
    v2 = doc_version(engine, "SOP-CAPA-001", 2)
    assert [a for a in assignments(engine) if a[2] == "2"] == []  # a draft assigns nothing
    engine.fire(v2, "approve", "quinn", {"effective_date": day(20)})
    new = [(t, r) for t, _d, v, r in assignments(engine) if v == "2"]
    assert sorted(t for t, _ in new) == ["carl", "cora", "quinn"]
    by = dict(new)
    assert by["carl"].data["due_date"] == day(19)  # before the effective date
    assert by["carl"].data["required_by"] == f"{cur_capa} (role capa_owner)"
    assert "document_record" not in by["carl"].data  # a reference to the shipped workflow
    assert by["quinn"].data["assessment_required"] is True
    assert by["carl"].data["assessment_required"] is False
    with engine.reader() as s:
        doc_id = engine.get(v2).id
        linked = s.execute(select(func.count()).select_from(RecordLink).where(
            RecordLink.target_id == doc_id, RecordLink.kind == "spawned_by")).scalar_one()
    assert linked == 3


def test_role_grant_assigns_and_revocation_cancels_with_a_reason(engine, org, make_user):
    """R-TRN-6 R-TRN-7: gaining a role assigns its curriculum on the effective version in the
    unit that writes the grant; losing it cancels the open assignments no other role of the
    person requires, through the workflow's cancel step as the system user, with a reason
    naming the revocation (audited); an assignment another role still requires stays."""
    doc_version(engine, "SOP-CAPA-001", 1, effective_in=0)
    doc_version(engine, "SOP-DEV-001", 3, effective_in=0)
    curriculum(engine, "capa_owner", ("SOP-CAPA-001", "read_and_understood"))
    curriculum(engine, "deviation_owner", ("SOP-DEV-001", "classroom"),
               ("SOP-CAPA-001", "read_and_understood"))
    make_user("ivan", "employee")
    assert [a for a in assignments(engine) if a[0] == "ivan"] == []
    with engine.unit() as s:
        identity.grant_role(s, identity.get_user(s, "ivan"), "deviation_owner",
                            actor=identity.system_user(s), reason="new job")
    mine = sorted((d, v) for t, d, v, _ in assignments(engine) if t == "ivan")
    assert mine == [("SOP-CAPA-001", "1"), ("SOP-DEV-001", "3")]
    with engine.unit() as s:
        identity.grant_role(s, identity.get_user(s, "ivan"), "capa_owner",
                            actor=identity.system_user(s), reason="also CAPAs")
    assert len([a for a in assignments(engine) if a[0] == "ivan"]) == 2  # nothing twice
    with engine.unit() as s:
        identity.revoke_role(s, identity.get_user(s, "ivan"), "deviation_owner",
                             actor=identity.system_user(s), reason="moved to packaging")
    still = [(d, r) for t, d, _v, r in assignments(engine) if t == "ivan"]
    assert [d for d, _ in still] == ["SOP-CAPA-001"]  # capa_owner still requires it
    (gone,) = [r for t, d, _v, r in assignments(engine, open_only=False)
               if t == "ivan" and d == "SOP-DEV-001"]
    assert gone.state == "cancelled"
    with engine.reader() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.record_id == gone.id,
                                                AuditEvent.action == "transition")).scalar_one()
    assert ev.transition == "cancel" and ev.actor_name.startswith("System")
    assert "role deviation_owner revoked from ivan by system: moved to packaging" in ev.reason
    assert "SOP-DEV-001 is no longer required of ivan" in ev.reason


def test_a_grant_that_fails_writes_no_assignment(engine, org, make_user):
    """R-TRN-6: the assignments commit or roll back with the grant (one unit of work)."""
    doc_version(engine, "SOP-CAPA-001", 1, effective_in=0)
    curriculum(engine, "capa_owner", ("SOP-CAPA-001", "read_and_understood"))
    make_user("ivan", "employee")
    with pytest.raises(RuntimeError), engine.unit() as s:
        identity.grant_role(s, identity.get_user(s, "ivan"), "capa_owner",
                            actor=identity.system_user(s), reason="x")
        raise RuntimeError("the grant's unit fails")
    assert [a for a in assignments(engine) if a[0] == "ivan"] == []


@pytest.mark.parametrize("data, field, text", [
    ({"role": "capa_owner", "documents": [{"document": "SOP-NOPE-9", "kind": "classroom"}]},
     "documents", "SOP-NOPE-9: no controlled document has this number"),
    ({"role": "capa_ownr", "documents": [{"document": "SOP-CAPA-001", "kind": "classroom"}]},
     "role", "'capa_ownr' is not a role"),
    ({"role": "qa", "documents": [{"document": "SOP-CAPA-001"}, {"document": "SOP-CAPA-001"}]},
     "documents", "SOP-CAPA-001 listed more than once"),
])
def test_a_curriculum_naming_an_unknown_document_or_role_is_refused(engine, org, data, field,
                                                                    text):
    """R-TRN-2: a curriculum naming a document number no controlled document has, a role
    nobody can be granted, or a document twice is refused with the field and what is wrong;
    nothing is written."""
    doc_version(engine, "SOP-CAPA-001", 1, effective_in=0)
    with engine.reader() as s:
        before = s.execute(select(func.count()).select_from(Record)).scalar_one()
    with pytest.raises(ValidationFailed) as exc:
        engine.start("curriculum", "tina", {"title": "Bad", **data})
    assert text in exc.value.errors[field]
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Record)).scalar_one() == before
    # the same check guards the edit and approval of a good draft
    good = engine.start("curriculum", "tina", {
        "title": "Good", "role": "qa",
        "documents": [{"document": "SOP-CAPA-001", "kind": "classroom"}]}).number
    with pytest.raises(ValidationFailed):
        engine.fire(good, "edit", "tina", data, reason="changed my mind")
    assert engine.get(good).data["role"] == "qa"


def test_gate_accepts_only_current_training_on_the_effective_version(engine, org):
    """R-TRN-10 R-TRN-11 R-P11-10i-1: a step requiring training on a controlled document
    accepts a completed training on its EFFECTIVE version only: training on the superseded
    version is refused, naming the document and the effective version; training older than
    the document's retraining interval is refused as expired."""
    v1 = doc_version(engine, "SOP-CAPA-001", 1, effective_in=0, retraining=365)
    curriculum(engine, "qa", ("SOP-CAPA-001", "read_and_understood"))
    (first,) = [r for t, _d, _v, r in assignments(engine) if t == "quinn"]
    complete(engine, first.number, "quinn")
    r = engine.start("capa_like", "quinn", {"title": "x"})
    # a second version becomes effective: the first is superseded
    v2 = doc_version(engine, "SOP-CAPA-001", 2, effective_in=10, retraining=365)
    engine.fire(v1, "supersede", "quinn", reason="version 2 in force")
    engine.fire(v2, "make_effective", "quinn")
    with pytest.raises(TrainingRequired) as exc:
        engine.fire(r.number, "close", "quinn")
    assert "SOP-CAPA-001 version 2 (the effective version)" in exc.value.message
    (second,) = [rec for t, _d, v, rec in assignments(engine) if t == "quinn" and v == "2"]
    complete(engine, second.number, "quinn")
    r2 = engine.start("capa_like", "quinn", {"title": "y"})
    clock.set(clock.now() + timedelta(days=366))
    with pytest.raises(TrainingRequired, match="expired: retraining every 365 days"):
        engine.fire(r2.number, "close", "quinn")
    clock.set(clock.now() - timedelta(days=2))
    assert engine.fire(r2.number, "close", "quinn").state == "closed"


def test_the_matrix_shows_each_person_and_document(engine, org):
    """R-TRN-12: the matrix: current (trained on the effective version), due, overdue, not
    trained, not required; the per-role and per-document compliance count on the effective
    version."""
    doc_version(engine, "SOP-CAPA-001", 1, effective_in=0)
    doc_version(engine, "SOP-DEV-001", 1, effective_in=0)
    curriculum(engine, "capa_owner", ("SOP-CAPA-001", "read_and_understood"), due_days=5)
    curriculum(engine, "qa", ("SOP-DEV-001", "read_and_understood"))
    (carl,) = [r for t, _d, _v, r in assignments(engine) if t == "carl"]
    complete(engine, carl.number, "carl")
    (quinn,) = [r for t, _d, _v, r in assignments(engine) if t == "quinn"]
    engine.fire(quinn.number, "cancel", "tina", reason="left for a week")  # not trained
    clock.set(clock.now() + timedelta(days=6))  # cora's assignment is now overdue
    with engine.reader() as s:
        m = tm.matrix(s, engine.registry)
        cells = {(p.username, n): c.status for p in m.people for n, c in p.cells.items()}
        assert cells[("carl", "SOP-CAPA-001")] == "current"
        assert cells[("cora", "SOP-CAPA-001")] == "overdue"
        assert cells[("quinn", "SOP-DEV-001")] == "missing"
        assert cells[("emma", "SOP-CAPA-001")] == "not_required"
        assert m.compliance() == (1, 3)
        by_doc = {c.key: (c.current, c.required, c.overdue) for c in
                  tm.compliance_by_document(m)}
        assert by_doc == {"SOP-CAPA-001": (1, 2, 1), "SOP-DEV-001": (0, 1, 0)}
        by_role = {c.key: (c.current, c.required) for c in tm.compliance_by_role(
            s, engine.registry)}
        assert by_role == {"capa_owner": (1, 2), "qa": (0, 1)}
        rows = tm.export_rows(m)
    assert rows[0][:7] == ["username", "full_name", "roles", "document", "title",
                           "effective_version", "status"]
    assert ["carl", "SOP-CAPA-001", "current"] == [rows[1][0], rows[1][3], rows[1][6]]


def test_compliance_by_department(engine, org):
    """R-TRN-17: compliance by department: each department's people's current trainings of
    the required ones (effective versions); people without a department form their own
    group; the matrix filters by department."""
    for who, dept in (("carl", "Production"), ("cora", "Quality Control")):
        profile.update_profile(engine, who, actor=SYSTEM_USERNAME, department=dept,
                               reason="test: the person's department")
    doc_version(engine, "SOP-CAPA-001", 1, effective_in=0)
    doc_version(engine, "SOP-DEV-001", 1, effective_in=0)
    curriculum(engine, "capa_owner", ("SOP-CAPA-001", "read_and_understood"), due_days=5)
    curriculum(engine, "qa", ("SOP-DEV-001", "read_and_understood"))
    (carl,) = [r for t, _d, _v, r in assignments(engine) if t == "carl"]
    complete(engine, carl.number, "carl")
    clock.set(clock.now() + timedelta(days=6))  # cora's and quinn's assignments overdue
    with engine.reader() as s:
        m = tm.matrix(s, engine.registry)
        by_dept = {c.key: (c.current, c.required, c.overdue)
                   for c in tm.compliance_by_department(m)}
        assert by_dept == {"Production": (1, 1, 0), "Quality Control": (0, 1, 1),
                           tm.NO_DEPARTMENT: (0, 1, 0)}
        only = tm.matrix(s, engine.registry, department="Quality Control")
        assert [p.username for p in only.people] == ["cora"]


def test_refresher_takes_the_retraining_interval_from_the_effective_version(engine, org):
    """R-TRN-9: the refresher job reads each effective version's retraining interval (no
    params list): a trainee whose training on it expires within the lead time gets one new
    assignment on the effective version, once."""
    from workflow.scheduling.jobs import default_jobs
    from workflow.scheduling.schedules import load_schedules_text
    from workflow.scheduling.service import run_due

    jobs = default_jobs()
    schedules = load_schedules_text(
        "schedules:\n  refreshers:\n    job: training_refreshers\n    cron: \"0 7 * * *\"\n"
        "    period: day\n", jobs=jobs)
    doc_version(engine, "SOP-CAPA-001", 1, effective_in=0, retraining=60)
    curriculum(engine, "capa_owner", ("SOP-CAPA-001", "read_and_understood"))
    (carl,) = [r for t, _d, _v, r in assignments(engine) if t == "carl"]
    complete(engine, carl.number, "carl")
    start = clock.now()
    clock.set(start + timedelta(days=20))  # expires in 40 days: outside the 30-day lead
    run_due(engine, schedules, jobs=jobs)
    assert [t for t, *_ in assignments(engine) if t == "carl"] == []
    clock.set(start + timedelta(days=35))  # expires in 25 days: within the lead
    run_due(engine, schedules, jobs=jobs)
    again = [(t, d, v) for t, d, v, _r in assignments(engine) if t == "carl"]
    assert again == [("carl", "SOP-CAPA-001", "1")]
    clock.set(start + timedelta(days=36))
    run_due(engine, schedules, jobs=jobs)  # the next day: nothing new
    assert len([t for t, *_ in assignments(engine) if t == "carl"]) == 1
