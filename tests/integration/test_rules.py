"""Each cross-cutting rule of workflow/rules.py decides the same in Python and in SQL.

The engine checks one record with the predicate; listings, the API and the KPIs filter many
rows with the SQL twin. These tests run both over a matrix of users x records (grants x
times, training records x times) and require the same answer everywhere.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import product

from sqlalchemy import insert, select

from workflow import clock, rules
from workflow.db.models import Record, RoleGrant, Task, TaskStatus, User
from workflow.identity import users as identity

DEV = {"title": "Dev", "description": "d", "occurred_on": "2026-03-01",
       "discovered_on": "2026-03-01", "area": "Filling", "immediate_actions": "hold"}


def test_visibility_predicate_and_sql_agree_on_every_user_and_record(engine, people, make_user):
    """R-P11-10d-2: who sees a record - by role, as initiator, as (former) assignee, as the
    system - is the same for the record page (can_see) and for lists and KPIs
    (visible_clause)."""
    make_user("nobody")
    make_user("ivan", "employee")
    make_user("ada", "admin")
    records = [engine.start("deviation", people["emp"], DEV).number,
               engine.start("capa", people["emp"], {"title": "C", "description": "d"}).number,
               engine.start("capa", people["qa"], {"title": "C2", "description": "d"}).number]
    # Ivan started a CAPA, then lost the role that let him: he still sees what he initiated
    with engine.unit() as s:
        ivan = identity.get_user(s, "ivan")
        identity.grant_role(s, ivan, "capa_owner", actor=identity.system_user(s), reason="t")
    records.append(engine.start("capa", "ivan", {"title": "Mine", "description": "d"}).number)
    with engine.unit() as s:
        system = identity.system_user(s)
        identity.revoke_role(s, identity.get_user(s, "ivan"), "capa_owner", actor=system,
                             reason="moved on")
        # Nobody holds no role at all but was assigned a task on the second CAPA
        rec = s.execute(select(Record).where(Record.number == records[1])).scalar_one()
        s.execute(insert(Task).values(
            record_id=rec.id, state=rec.state, state_visit=rec.state_visit, role=None,
            assignee_id=identity.get_user(s, "nobody").id, status=TaskStatus.DONE,
            opened_at=clock.now()))

    usernames = [*people.values(), "nobody", "ivan", "ada", "system"]
    seen_some, hidden_some = 0, 0
    with engine.reader() as s:
        all_defs = [engine.registry.by_hash(s, h).definition for h in
                    s.execute(select(Record.definition_hash).distinct()).scalars()]
        recs = s.execute(select(Record).where(Record.number.in_(records))).scalars().all()
        for name in usernames:
            user = s.execute(select(User).where(User.username == name)).scalar_one()
            roles = set() if user.is_system else identity.roles_of(s, user)
            in_sql = set(s.execute(select(Record.number).where(
                Record.number.in_(records),
                rules.visible_clause(user, roles, all_defs))).scalars())
            for rec in recs:
                d = engine.registry.by_hash(s, rec.definition_hash).definition
                py = rules.can_see(s, d, rec, user, roles)
                assert py == (rec.number in in_sql), (name, rec.number, py)
                seen_some += py
                hidden_some += not py
    # the matrix exercised both answers, and each way of seeing
    assert seen_some and hidden_some
    with engine.reader() as s:
        ivan = identity.get_user(s, "ivan")
        nobody = identity.get_user(s, "nobody")
        recs = {r.number: r for r in s.execute(select(Record)).scalars()}
        capa = engine.registry.by_hash(s, recs[records[3]].definition_hash).definition
        assert rules.can_see(s, capa, recs[records[3]], ivan, identity.roles_of(s, ivan))
        assert rules.can_see(s, capa, recs[records[1]], nobody, set())
        assert not rules.can_see(s, capa, recs[records[2]], nobody, set())


def test_active_grant_predicate_and_sql_agree_at_every_time(engine, make_user):
    """R-A11-12-1: a grant counts from its grant time until it is revoked or expires; the
    engine's roles and the KPIs' as-of grants use the same rule."""
    make_user("gina")
    t0 = clock.now()
    offsets = (None, -2, 0, 2, 5)  # days from t0; None: never
    with engine.unit() as s:
        gina = identity.get_user(s, "gina")
        for i, (granted, revoked, expires) in enumerate(product((-5, 0, 3), offsets, offsets)):
            s.add(RoleGrant(user_id=gina.id, role=f"r{i}", granted_at=t0 + timedelta(days=granted),
                            granted_by_id=gina.id,
                            revoked_at=None if revoked is None else t0 + timedelta(days=revoked),
                            expires_at=None if expires is None else t0 + timedelta(days=expires)))
    answers = set()
    with engine.reader() as s:
        grants = s.execute(select(RoleGrant).where(RoleGrant.role.like("r%"))).scalars().all()
        for days in (-6, -5, -1, 0, 1, 2, 3, 4, 6):
            at = t0 + timedelta(days=days)
            in_sql = set(s.execute(select(RoleGrant.id).where(
                RoleGrant.role.like("r%"), rules.active_grant_clause(at))).scalars())
            for g in grants:
                py = rules.grant_active(g, at)
                assert py == (g.id in in_sql), (g.granted_at, g.revoked_at, g.expires_at, at)
                answers.add(py)
            # the engine's roles_of is the same rule at its time
            clock.set(at)
            gina = identity.get_user(s, "gina")
            assert identity.roles_of(s, gina) == {g.role for g in grants if g.id in in_sql}
    assert answers == {True, False}


def test_training_done_predicate_and_sql_agree_and_name_no_workflow(engine, people):
    """R-P11-10i-1: a training record shows completed training when closed done by the time
    asked; the training workflow is found by its declared capability, not by its name."""
    with engine.reader() as s:
        workflows = rules.training_workflows(engine.registry.known(s).values())
    assert list(workflows) == ["training_assignment"]
    cap = workflows["training_assignment"]
    assert (cap.trainee, cap.document, cap.version) == ("trainee", "document", "document_version")
    t0 = clock.now()
    numbers = []
    for i in range(4):
        numbers.append(engine.start("training_assignment", people["qa"], {
            "title": f"T{i}", "trainee": people["emp"], "document": f"SOP-{i}",
            "document_version": "1", "due_date": (t0 + timedelta(days=9)).date().isoformat()}).number)
    # close them as an import would: done yesterday, done tomorrow, void, still open
    with engine.unit() as s:
        for number, (outcome, closed) in zip(numbers, (("done", -1), ("done", 1), ("void", -1),
                                                        (None, None)), strict=True):
            s.execute(Record.__table__.update().where(Record.number == number).values(
                outcome=outcome, closed_at=None if closed is None else t0 + timedelta(days=closed)))
    answers = set()
    with engine.reader() as s:
        recs = s.execute(select(Record).where(Record.number.in_(numbers))).scalars().all()
        for days in (-2, 0, 2):
            at = t0 + timedelta(days=days)
            in_sql = set(s.execute(select(Record.number).where(
                Record.number.in_(numbers), rules.training_done_clause(at, workflows))).scalars())
            for rec in recs:
                py = rules.training_done(rec, at)
                assert py == (rec.number in in_sql), (rec.number, rec.outcome, rec.closed_at, at)
                answers.add(py)
                doc = rec.data["document"]
                assert rules.trained_on(s, workflows, people["emp"], doc, "1", at) == py
                assert not rules.trained_on(s, workflows, people["emp"], doc, "2", at)
                assert not rules.trained_on(s, workflows, people["qa"], doc, None, at)
    assert answers == {True, False}
