"""Concurrency on real commits: racing transitions, racing quorum signatures, gap-free record
numbers (R-P11-10f-3, R-P11-10e-1, R-P11-10g-2, R-P11-70-1).

Every test here has a database of its own (``committed_engine``) because the engine's
transactions really commit and threads each open their own connection. Threads meet at a
``threading.Barrier`` so that they fire at the same moment; nothing sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.factories import sign
from workflow.audit import integrity
from workflow.db.models import AuditEvent, Record, RecordCounter, Signature
from workflow.engine.core import Engine
from workflow.errors import (
    StaleRecord,
    TransitionNotAvailable,
    ValidationFailed,
    WorkflowError,
)
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.spec.load import load_text

pytestmark = pytest.mark.committed

CREW = {
    "emp": ("emma", ["employee"]),
    "qa": ("quinn", ["qa", "employee"]),
    "qa2": ("quentin", ["qa", "employee"]),
    "owner": ("olga", ["capa_owner", "change_owner", "employee"]),
    "po": ("paul", ["process_owner", "employee"]),
}


@pytest.fixture
def crew(committed_engine: Engine) -> dict[str, str]:
    """The same small organisation as ``people``, committed to the test's own database."""
    with committed_engine.unit() as s:
        system = identity.system_user(s)
        for username, roles in CREW.values():
            u = identity.create_user(s, username, username.title() + " Tester",
                                     email=f"{username}@example.com", actor=system,
                                     reason="test")
            for r in roles:
                identity.grant_role(s, u, r, actor=system, reason="test")
            enablement.enable_for_system(s, u, reason="test")
    return {k: v[0] for k, v in CREW.items()}


def race(n: int, action: Callable[[int], Any]) -> list[tuple[str, Any]]:
    """Run ``action(i)`` in ``n`` threads released together; ("ok", result) or ("error", exc)."""
    barrier = threading.Barrier(n)

    def run(i: int) -> tuple[str, Any]:
        barrier.wait(timeout=30)
        try:
            return "ok", action(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            return "error", exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n), timeout=60))


def capa_at_plan_approval(engine: Engine, crew: dict[str, str]) -> Any:
    r = engine.start("capa", crew["emp"], {"title": "Label mix-up", "description": "Found at QC."})
    engine.fire(r.number, "assign", crew["qa"], {"owner": crew["owner"]})
    engine.fire(r.number, "submit_root_cause", crew["owner"],
                {"root_cause_category": "method", "root_cause": "No label check."})
    return engine.fire(r.number, "submit_plan", crew["owner"], {
        "actions": [{"description": "Add a label check", "responsible": crew["owner"]}],
        "effectiveness_criteria": "No mix-ups in 3 months"})


def assert_audit_verifies(engine: Engine) -> None:
    with engine.reader() as s:
        report = integrity.verify(s, engine.signing_key)
    assert report.ok, [str(p) for p in report.problems]


def test_two_signed_approvals_race_exactly_one_wins(committed_engine, crew):
    """R-P11-10f-3 R-P11-70-1 R-P11-10e-1: two QA people approve the same plan at the same
    moment with the same expected version: one wins, the other gets StaleRecord; the record
    moves once, with one transition event and one signature."""
    engine = committed_engine
    signers = [crew["qa"], crew["qa2"]]
    for _round in range(3):  # a few rounds, so the threads really overlap at least once
        r = capa_at_plan_approval(engine, crew)
        results = race(2, lambda i, r=r: engine.fire(
            r.number, "approve_plan", signers[i], signature=sign(signers[i]),
            expected_version=r.version))

        wins = [v for kind, v in results if kind == "ok"]
        losses = [v for kind, v in results if kind == "error"]
        assert len(wins) == 1 and len(losses) == 1, results
        assert isinstance(losses[0], StaleRecord | TransitionNotAvailable), repr(losses[0])
        if isinstance(losses[0], StaleRecord):
            assert (losses[0].expected, losses[0].actual) == (r.version, wins[0].version)
            assert "Reload it and try again" in str(losses[0])
        assert wins[0].state == "implementation"
        assert wins[0].version == r.version + 1

        with engine.reader() as s:
            rec = s.execute(select(Record).where(Record.number == r.number)).scalar_one()
            assert (rec.state, rec.version) == ("implementation", r.version + 1)
            moves = s.execute(select(AuditEvent).where(
                AuditEvent.record_id == rec.id, AuditEvent.action == "transition",
                AuditEvent.transition == "approve_plan")).scalars().all()
            assert len(moves) == 1
            sigs = s.execute(select(Signature).where(Signature.record_id == rec.id)
                             ).scalars().all()
            assert len(sigs) == 1
            assert sigs[0].id == wins[0].signature_id
            sign_events = s.execute(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.record_id == rec.id, AuditEvent.action == "sign")).scalar_one()
            assert sign_events == 1
    assert_audit_verifies(engine)


def test_same_transition_without_expected_version_moves_once(committed_engine, crew):
    """R-P11-10f-3 R-P11-10f-1: without an expected version the second caller finds the record
    already moved and is refused (TransitionNotAvailable), never a double move."""
    engine = committed_engine
    r = engine.start("capa", crew["emp"], {"title": "Race", "description": "d"})
    qas = [crew["qa"], crew["qa2"]]
    results = race(2, lambda i: engine.fire(r.number, "assign", qas[i], {"owner": crew["owner"]}))
    kinds = sorted(kind for kind, _ in results)
    assert kinds == ["error", "ok"], results
    loss = next(v for kind, v in results if kind == "error")
    assert isinstance(loss, TransitionNotAvailable), repr(loss)
    assert loss.state == "investigation"
    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == r.number)).scalar_one()
        assert (rec.state, rec.version) == ("investigation", 2)
        moves = s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.record_id == rec.id, AuditEvent.action == "transition")).scalar_one()
        assert moves == 1
    assert_audit_verifies(engine)


def test_quorum_signatures_given_at_once_both_count_and_move_once(committed_engine, crew):
    """R-P11-10g-2 R-P11-10f-3 R-P11-70-1: QA and the process owner sign a two-signature
    approval at the same moment: both signatures are kept, the record moves exactly once."""
    engine = committed_engine
    r = engine.start("change_request", crew["owner"], {
        "title": "New punch set", "description": "Worn punches", "justification": "Wear",
        "change_type": "equipment", "owner": crew["owner"]})
    engine.fire(r.number, "submit", crew["owner"])
    engine.fire(r.number, "submit_for_approval", crew["owner"], {
        "classification": "minor", "quality_impact": "none", "regulatory_impact": "none",
        "validation_impact": "none", "training_impact": "none",
        "implementation_plan": "Swap the set", "target_date": "2026-04-01"})
    signers = [crew["qa"], crew["po"]]
    results = race(2, lambda i: engine.fire(r.number, "approve", signers[i],
                                            signature=sign(signers[i])))
    assert [kind for kind, _ in results] == ["ok", "ok"], results
    assert sorted(v.moved for _, v in results) == [False, True]
    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == r.number)).scalar_one()
        assert rec.state == "implementation"
        roles = s.execute(select(Signature.signer_role).where(Signature.record_id == rec.id)
                          ).scalars().all()
        assert sorted(roles) == ["process_owner", "qa"]
        moves = s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.record_id == rec.id, AuditEvent.transition == "approve",
            AuditEvent.action == "transition")).scalar_one()
        assert moves == 1
    assert_audit_verifies(engine)


def test_record_numbers_under_concurrency_are_distinct_and_gap_free(committed_engine, crew):
    """R-P11-10e-1 R-P11-10f-3: 4 threads x 10 starts give CAPA-2026-0001..0040, each once."""
    engine = committed_engine
    starters = [crew["emp"], crew["qa"], crew["qa2"], crew["owner"]]

    def starts(i: int) -> list[str]:
        return [engine.start("capa", starters[i], {"title": f"T{i}-{k}", "description": "d"}).number
                for k in range(10)]

    results = race(4, starts)
    assert all(kind == "ok" for kind, _ in results), results
    numbers = [n for _, batch in results for n in batch]
    assert len(numbers) == 40
    assert sorted(numbers) == [f"CAPA-2026-{i:04d}" for i in range(1, 41)]
    for _, batch in results:  # each thread sees its own numbers increase
        assert batch == sorted(batch)
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(Record)).scalar_one() == 40
        counter = s.execute(select(RecordCounter.last_value).where(
            RecordCounter.prefix == "CAPA", RecordCounter.year == 2026)).scalar_one()
        assert counter == 40
    assert_audit_verifies(engine)


# A workflow whose initial state spawns one CAPA per entry of ``sources`` (copied into the CAPA's
# source, a choice): an entry that is not one of the choices fails the on-enter action after the
# parent and the earlier CAPAs already took their numbers.
SPAWNER = """\
key: spawner
title: Spawner
prefix: SPW
description: Test workflow whose on-enter action can fail after numbers were taken.
risk: low
process_owner: qa
roles:
  employee: Employee
  qa: Quality Assurance
fields:
  title: {type: string, label: Title}
  description: {type: text, label: Description}
  sources:
    type: list
    label: CAPA sources
    item: {type: string, label: Source}
start:
  roles: [employee]
  edits: [title, description, sources]
  requires: [title, description]
states:
  open:
    label: Open
    initial: true
    owner: qa
    on_enter:
      - create_record:
          workflow: capa
          for_each: "sources"
          copy:
            title: "title"
            description: "description"
            source: "item"
  done:
    label: Done
    final: true
    outcome: done
transitions:
  - name: finish
    label: Finish
    from: open
    to: done
    roles: [qa]
"""


@pytest.fixture
def spawner(committed_engine: Engine, shipped_definitions: dict[str, Any]) -> str:
    d = load_text(SPAWNER, origin="spawner.yaml", known_workflows=shipped_definitions)
    with committed_engine.unit() as s:
        committed_engine.registry.publish(s, d, identity.system_user(s), reason="test")
    return d.key


def test_failed_start_gives_its_number_back(committed_engine, crew, spawner):
    """R-P11-10e-1: a start that fails (invalid data, or an on-enter action failing after the
    record and a spawned CAPA took their numbers) rolls back completely: no record, no audit
    event, and the next starts get the next consecutive numbers (no gap)."""
    engine = committed_engine
    assert engine.start("capa", crew["emp"], {"title": "a", "description": "d"}).number \
        == "CAPA-2026-0001"
    with pytest.raises(ValidationFailed):
        engine.start("capa", crew["emp"], {"title": "b", "description": "d",
                                           "source": "bogus"})
    with pytest.raises(ValidationFailed):
        engine.start("capa", crew["emp"], {"title": "c"})  # description is required
    assert engine.start("capa", crew["emp"], {"title": "d", "description": "d"}).number \
        == "CAPA-2026-0002"

    with engine.reader() as s:
        events_before = s.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    # SPW-2026-0001 and CAPA-2026-0003 are taken, then the second CAPA ("bogus") fails
    with pytest.raises(WorkflowError, match="could not create its linked"):
        engine.start(spawner, crew["emp"], {"title": "s", "description": "d", "sources": ["audit", "bogus"]})
    with engine.reader() as s:
        assert s.execute(select(Record.number).order_by(Record.id)).scalars().all() == [
            "CAPA-2026-0001", "CAPA-2026-0002"]
        assert s.execute(select(func.count()).select_from(AuditEvent)).scalar_one() \
            == events_before

    r = engine.start(spawner, crew["emp"], {"title": "s", "description": "d", "sources": ["audit", "trend"]})
    assert r.number == "SPW-2026-0001"
    assert r.created == ("SPW-2026-0001", "CAPA-2026-0003", "CAPA-2026-0004")
    assert engine.start("capa", crew["emp"], {"title": "e", "description": "d"}).number \
        == "CAPA-2026-0005"
    assert_audit_verifies(engine)
