"""What a step costs the database, counted rather than timed (the machine's load does not move
a count), and what happens when the pooled connection a step is given turns out dead.

Statements are counted with SQLAlchemy's ``before_cursor_execute`` event on a database with
real commits (``committed_engine``), for each step of a CAPA's life (bench/engine.py's
workload): what the database runs between the unit's BEGIN and its one COMMIT.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, select, text

from tests.factories import give_training, is_pg, sign
from workflow.audit import integrity
from workflow.db.models import AuditEvent, Record
from workflow.engine.core import Engine

pytestmark = pytest.mark.committed

#: the most statements (not counting BEGIN and COMMIT) a step of the CAPA life may run
UNSIGNED_MAX = 7
SIGNED_MAX = 12

ACTIONS = [{"description": "fix", "responsible": "olga", "due": "2026-12-31"}]
LIFE: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("assign", "quinn", {"owner": "olga"}, {}),
    ("submit_root_cause", "olga", {"root_cause_category": "method", "root_cause": "rc"}, {}),
    ("submit_plan", "olga", {"actions": ACTIONS, "effectiveness_criteria": "none again"}, {}),
    ("reject_plan", "quinn", {"plan_rejection_reason": "vague"}, {"reason": "too vague"}),
    ("submit_plan", "olga", {"actions": ACTIONS, "effectiveness_criteria": "none in 90d"}, {}),
    ("approve_plan", "quinn", {}, {"signature": "quinn"}),
    ("complete_implementation", "olga",
     {"implementation_summary": "done", "actions": [{**ACTIONS[0], "done": True}]}, {}),
    ("verify", "quinn", {"verification_evidence": "ok"}, {"signature": "quinn"}),
    ("record_effectiveness", "quinn",
     {"effectiveness_result": "effective", "effectiveness_evidence": "ok"},
     {"reason": "judged early"}),
    ("close", "quentin", {}, {"signature": "quentin"}),
]


def _step_kwargs(extra: dict[str, Any]) -> dict[str, Any]:
    """A LIFE step's signature (signed by the named person) and reason, as fire() takes them."""
    kwargs: dict[str, Any] = {}
    if "signature" in extra:
        kwargs["signature"] = sign(extra["signature"])
    if "reason" in extra:
        kwargs["reason"] = extra["reason"]
    return kwargs


@pytest.fixture
def crew(committed_engine: Engine) -> None:
    from tests.integration.test_concurrency import CREW
    from workflow.identity import enablement
    from workflow.identity import users as identity

    with committed_engine.unit() as s:
        system = identity.system_user(s)
        for username, roles in CREW.values():
            u = identity.create_user(s, username, username.title() + " Tester",
                                     actor=system, reason="test")
            for r in roles:
                identity.grant_role(s, u, r, actor=system, reason="test")
            enablement.enable_for_system(s, u, reason="test")
    # the closer is trained on the CAPA SOP (the close step's training gate is counted too)
    give_training(committed_engine, "quentin")


class Counter:
    """The statements the engine's database runs (each as its first word and text)."""

    def __init__(self, dbe: Any) -> None:
        self.statements: list[str] = []
        self.commits = 0
        event.listen(dbe, "before_cursor_execute", self._stmt)
        event.listen(dbe, "commit", self._commit)

    def _stmt(self, _conn: Any, _cur: Any, statement: str, *_a: Any) -> None:
        self.statements.append(" ".join(statement.split()))

    def _commit(self, _conn: Any) -> None:
        self.commits += 1

    def reset(self) -> None:
        self.statements.clear()
        self.commits = 0

    def work(self) -> list[str]:
        """The statements other than the transaction's BEGIN."""
        return [s for s in self.statements if not s.upper().startswith("BEGIN")]


@pytest.fixture
def counted(committed_engine: Engine, crew: None) -> Iterator[tuple[Engine, Counter]]:
    yield committed_engine, Counter(committed_engine.sessions.kw["bind"])


def test_statements_per_step(counted: tuple[Engine, Counter]) -> None:
    """R-PERF-1: every step of a CAPA's life (7 unsigned, 3 signed) is one transaction with
    ONE commit; an unsigned step runs at most UNSIGNED_MAX statements besides BEGIN and
    COMMIT, a signed one at most SIGNED_MAX; the acting user and their role grants are read
    in one statement, and a user's id is looked up at most once a step."""
    engine, counter = counted
    number = engine.start("capa", "emma", {"title": "Counted", "description": "d"}).number
    seen: dict[str, int] = {}
    for name, actor, data, extra in LIFE:
        counter.reset()
        engine.fire(number, name, actor, data, **_step_kwargs(extra))
        work = counter.work()
        assert counter.commits == 1, (name, counter.statements)
        ceiling = SIGNED_MAX if "signature" in extra else UNSIGNED_MAX
        assert len(work) <= ceiling, (name, len(work), work)
        grants_reads = [s for s in work if s.startswith("SELECT") and "FROM role_grants" in s]
        assert len(grants_reads) == 0 or "signature" in extra, (name, grants_reads)
        actor_reads = [s for s in work if s.startswith("SELECT users.id, users.username")
                       and "role_grants" in s]
        assert len(actor_reads) == 1, (name, work)
        id_lookups = [s for s in work if s.startswith("SELECT users.id FROM users")]
        assert len(id_lookups) <= 1, (name, id_lookups)
        seen[name] = len(work)
    assert engine.get(number).state == "closed"
    # the counts the notes quote (docs/performance.md): unsigned steps, then signed ones
    assert max(seen[n] for n, *_r, x in LIFE if "signature" not in x) <= UNSIGNED_MAX
    report = integrity.verify_all(engine, workers=1)
    assert report.ok, report.problems


def test_a_step_reads_the_trail_only_when_a_rule_needs_it(
        counted: tuple[Engine, Counter]) -> None:
    """R-PERF-24: a step that only enters new values (root cause; the plan's rejection
    reason) reads no audit trail and runs 6 statements (actor, record, close tasks, open
    tasks, audit events, record row); naming the actor in a user field looks nobody up, and
    the task for the person a field names gets its id inside the INSERT."""
    engine, counter = counted
    number = engine.start("capa", "emma", {"title": "Lean", "description": "d"}).number
    engine.fire(number, "assign", "quinn", {"owner": "olga"})
    for name, actor, data, extra in LIFE[1:4]:
        counter.reset()
        engine.fire(number, name, actor, data, **extra)
        work = counter.work()
        if name == "submit_plan":
            # the plan names its actor as responsible: no look-up of olga (the trail is read:
            # the plan's actions are a field the approval locks)
            assert not [q for q in work if q.startswith("SELECT users.username")], work
            continue
        assert not [q for q in work if "FROM audit_events" in q], (name, work)
        assert not [q for q in work if q.startswith("SELECT users.id FROM users")], work
        assert len(work) == 6, (name, work)


def test_no_pre_ping_per_checkout(committed_engine: Engine) -> None:
    """R-PERF-2: the pool does not ping the server on every checkout (a round trip per
    step); dead connections are handled when used (test below)."""
    dbe = committed_engine.sessions.kw["bind"]
    assert not dbe.pool._pre_ping


def test_dead_pooled_connection_is_replaced(counted: tuple[Engine, Counter],
                                            committed_url: str, database_url: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """R-PERF-2: a pooled connection the server closed while idle (a restart, an idle
    timeout) fails the next step's first statement; the engine invalidates it with the
    pool's older connections and runs the step once more on a fresh connection, so the
    person sees no error, the step is taken exactly once and the trail stays intact."""
    if not is_pg(database_url):
        pytest.skip("a server that closes connections: PostgreSQL")
    engine, _ = counted
    number = engine.start("capa", "emma", {"title": "Outage", "description": "d"}).number
    engine.fire(number, "assign", "quinn", {"owner": "olga"})
    name = committed_url.rsplit("/", 1)[1].split("?")[0]
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        killed = c.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": name}).scalar()
    admin.dispose()
    assert killed >= 1  # the pool's idle connection is gone
    with caplog.at_level(logging.WARNING, logger="workflow.db.uow"):
        result = engine.fire(number, "submit_root_cause", "olga",
                             {"root_cause_category": "method", "root_cause": "rc"})
    assert "running it once more on a new connection" in caplog.text  # it was lost
    assert result.state == "action_plan" and result.version == 3
    with engine.reader() as s:
        steps = s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.record_id == result.record_id, AuditEvent.action == "transition",
            AuditEvent.transition == "submit_root_cause")).scalar_one()
        assert steps == 1
        assert s.get(Record, result.record_id).version == 3
    assert integrity.verify_all(engine, workers=1).ok


def test_no_statement_binds_a_parameter_against_the_open_task_index(
        counted: tuple[Engine, Counter]) -> None:
    """R-PERF-80: no statement of a CAPA's life compares ``tasks.status`` with a bound
    parameter. The partial indexes on open tasks (migration 0012) name ``status = 'open'``;
    SQLite then marks a prepared statement binding a parameter against it as expired at
    every bind and plans it again on every execution (issue 18: the record lock's read
    174 us instead of 26 us, closing a state's tasks 87 instead of 16), and PostgreSQL's
    generic plans cannot use the index for a parameter. The open-task condition is written
    as a literal (``workflow.db.models.OPEN_TASK``)."""
    import re

    engine, counter = counted
    counter.reset()
    number = engine.start("capa", "emma", {"title": "Literal", "description": "d"}).number
    for name, actor, data, extra in LIFE:
        engine.fire(number, name, actor, data, **_step_kwargs(extra))
    bound = re.compile(r"tasks\.status (=|!=|<>) (\?|%\(|\$\d)")
    offending = [s for s in counter.statements if bound.search(s)]
    assert not offending, offending
    assert any("tasks.status = 'open'" in s for s in counter.statements)
    assert engine.get(number).state == "closed"


def test_the_units_connection_is_the_sessions_transaction(committed_engine: Engine) -> None:
    """R-PERF-82: the Core statements of a step run on the unit's connection
    (``workflow.db.uow.connection``), which is the session's own: what one writes the other
    reads in the same transaction, a rolled-back unit leaves nothing from either, and after
    the session's transaction ends the next statement runs in a new one, not on a closed
    connection."""
    from workflow.db.uow import connection

    count = text("SELECT count(*) FROM record_counters WHERE prefix = 'TUOW'")
    add = text("INSERT INTO record_counters (prefix, year, last_value) VALUES ('TUOW', :y, 1)")
    with pytest.raises(RuntimeError), committed_engine.unit() as s:
        conn = connection(s)
        assert conn is connection(s)  # one connection a unit
        conn.execute(add, {"y": 2001})
        assert s.execute(count).scalar_one() == 1
        s.execute(add, {"y": 2002})
        assert connection(s).execute(count).scalar_one() == 2
        raise RuntimeError("rolled back")
    with committed_engine.reader() as s:
        assert connection(s).execute(count).scalar_one() == 0
    # a session whose transaction ended (outside a unit, where that can happen)
    s = committed_engine.sessions()
    try:
        first = connection(s)
        s.rollback()
        assert first.closed
        again = connection(s)
        assert again is not first and not again.closed
        assert again.execute(count).scalar_one() == 0
    finally:
        s.close()
