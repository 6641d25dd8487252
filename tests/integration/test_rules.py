"""Each cross-cutting rule of workflow/rules.py decides the same in Python and in SQL.

The engine checks one record with the predicate; listings, the API and the KPIs filter many
rows with the SQL twin. These tests run both over a matrix of users x records (grants x
times, training records x times) and require the same answer everywhere.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import product

from sqlalchemy import insert, select

from workflow import clock, rules, tasks
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


def test_training_current_predicate_and_sql_agree_on_retraining_intervals(engine, people):
    """R-TRN-11: a completed training is current until the document's retraining interval
    has passed since it was completed: the predicate and its SQL twin agree for every
    record, time and interval, and the gate's one-statement check says the same."""
    with engine.reader() as s:
        workflows = rules.training_workflows(engine.registry.known(s).values())
    t0 = clock.now()
    numbers = [engine.start("training_assignment", people["qa"], {
        "title": f"T{i}", "trainee": people["emp"], "document": f"SOP-R{i}",
        "document_version": "1", "due_date": (t0 + timedelta(days=9)).date().isoformat()}
    ).number for i in range(3)]
    with engine.unit() as s:
        for number, closed in zip(numbers, (-400, -20, 0), strict=True):
            s.execute(Record.__table__.update().where(Record.number == number).values(
                outcome="done", closed_at=t0 + timedelta(days=closed)))
    answers = set()
    with engine.reader() as s:
        recs = s.execute(select(Record).where(Record.number.in_(numbers))).scalars().all()
        for days in (None, 10, 30, 365, 500):
            for shift in (0, 5):
                at = t0 + timedelta(days=shift)
                in_sql = set(s.execute(select(Record.number).where(
                    Record.number.in_(numbers),
                    rules.training_current_clause(at, workflows, days))).scalars())
                for rec in recs:
                    py = rules.training_current(rec, at, days)
                    assert py == (rec.number in in_sql), (rec.number, rec.closed_at, at, days)
                    answers.add(py)
                    found = rules.check_training(s, workflows, {}, people["emp"],
                                                 rec.data["document"], "1", at)
                    assert found.current == (rules.training_done(rec, at))  # no interval
    assert answers == {True, False}


def _task_matrix(engine, people) -> None:
    """Open and done tasks of every kind on a few records: assigned to olga or quinn,
    claimable by qa, capa_owner or process_owner, dated (some sharing a due time) and
    undated."""
    numbers = [engine.start("capa", people["emp"], {"title": f"C{i}", "description": "d"}
                            ).number for i in range(3)]
    base = clock.now()
    with engine.unit() as s:
        uid = {n: identity.get_user(s, n).id for n in (people["owner"], people["qa"])}
        recs = s.execute(select(Record).where(Record.number.in_(numbers))).scalars().all()
        rows = []
        for i, (rec, role, who, due, status) in enumerate(product(
                recs, ["qa", "capa_owner", "process_owner", None],
                [None, people["owner"], people["qa"]],
                [None, base + timedelta(days=1), base - timedelta(days=2)],
                [TaskStatus.OPEN, TaskStatus.DONE])):
            if role is None and who is None:
                continue  # every task has a role or an assignee
            rows.append(dict(record_id=rec.id, state=rec.state, state_visit=rec.state_visit,
                             role=role, assignee_id=uid[who] if who else None, status=status,
                             opened_at=base, due_at=due + timedelta(seconds=i % 2) if due
                             else None))
        s.execute(insert(Task), rows)


def test_inbox_predicate_and_sql_agree_and_pages_walk_every_task_once(engine, people):
    """R-PERF-10: a user's inbox (rules.in_inbox: open, mine or claimable by a role I hold) is
    the same task set for the predicate and for the inbox pages built on its SQL twin
    (rules.inbox_branches): walking every page with the cursor lists each task exactly once,
    in due order with undated tasks last, and "mine" / "claimable" split it."""
    _task_matrix(engine, people)
    with engine.reader() as s:
        for name in (people["owner"], people["qa"], people["po"], people["emp"]):
            user = identity.get_user(s, name)
            roles = identity.roles_of(s, user)
            expected = {t.id: t for t in s.execute(select(Task)).scalars()
                        if rules.in_inbox(t, user, roles)}
            in_sql = set()
            for _name, cond in rules.inbox_branches(user, roles):
                got = set(s.execute(select(Task.id).where(cond)).scalars())
                assert not got & in_sql, "the branches are disjoint"
                in_sql |= got
            assert in_sql == set(expected), name
            for scope in ("all", "mine", "claimable"):
                seen, cursor = [], None
                while True:
                    page = tasks.inbox(s, user, scope=scope, cursor=cursor, limit=4)
                    seen += [r.task_id for r in page.rows]
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                want = [t for t in expected.values() if scope == "all"
                        or (scope == "mine") == (t.assignee_id == user.id)]
                key = [(t.due_at is None, t.due_at or clock.now(), t.id) for t in want]
                assert seen == [t.id for _k, t in sorted(zip(key, want, strict=True),
                                                          key=lambda p: p[0])], (name, scope)
                assert page.total == len(want) and not page.capped
            if name == people["qa"]:
                assert any(t.assignee_id is None for t in expected.values())
                assert any(t.due_at is None for t in expected.values())
                overdue = tasks.inbox(s, user, overdue=True, limit=100).rows
                assert {r.task_id for r in overdue} == {
                    t.id for t in expected.values() if t.due_at and t.due_at < clock.now()}


def test_inbox_counts_are_capped_not_scanned(engine, people, monkeypatch):
    """R-PERF-11: the inbox counts read at most tasks.COUNT_CAP + 1 tasks a branch; above it
    the page says the counts are lower bounds (and the rows are still the first ones)."""
    _task_matrix(engine, people)
    monkeypatch.setattr(tasks, "COUNT_CAP", 3)
    with engine.reader() as s:
        user = identity.get_user(s, people["qa"])
        page = tasks.inbox(s, user, limit=5)
        assert page.capped and len(page.rows) == 5
        # each of quinn's branches (mine, qa, employee) counted at most 4 tasks
        assert page.total <= 4 * 3
        assert page.counts == {"capa": page.total}
