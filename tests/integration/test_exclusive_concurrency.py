"""The ``exclusive:`` control on real commits (R-DOC-9): two units racing to put records with
the same key into an exclusive state queue on the key's lock; the second finds the first and
loses cleanly (ExclusiveStateTaken, nothing of it written) on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.test_concurrency import assert_audit_verifies, race
from workflow.db.models import Record
from workflow.engine.core import Engine
from workflow.errors import ExclusiveStateTaken
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.spec.load import load_text

pytestmark = pytest.mark.committed

LAMP = """
key: lamp
title: Lamp
prefix: LMP
roles: {qa: QA}
fields:
  title: {type: string}
  room: {type: string}
exclusive:
  - key: [room]
    states: [lit]
start: {roles: [qa], edits: [title, room]}
states:
  dark: {initial: true}
  lit: {}
  done: {final: true, outcome: done}
transitions:
  - {name: turn_on, from: dark, to: lit, roles: [qa]}
  - {name: finish, from: [dark, lit], to: done, roles: [qa]}
"""


@pytest.fixture
def people(committed_engine: Engine) -> dict[str, str]:
    with committed_engine.unit() as s:
        system = identity.system_user(s)
        d = load_text(LAMP, origin="lamp.yaml")
        committed_engine.registry.publish(s, d, system, reason="test")
        for name, roles in (("quinn", ("qa", "employee")),
                            ("dora", ("document_owner", "employee"))):
            u = identity.create_user(s, name, name.title() + " Tester",
                                     email=f"{name}@example.com", actor=system, reason="test")
            for r in roles:
                identity.grant_role(s, u, r, actor=system, reason="test")
            enablement.enable_for_system(s, u, reason="test")
    return {"qa": "quinn", "owner": "dora"}


def test_two_records_racing_into_an_exclusive_state_one_wins(committed_engine, people):
    """R-DOC-9: two lamps of one room turned on at the same moment: exactly one is lit, the
    other is refused naming it and stays dark; the trail verifies."""
    engine = committed_engine
    lamps = [engine.start("lamp", people["qa"], {"title": f"lamp {i}", "room": "lab"}).number
             for i in range(2)]
    for _ in range(3):  # a few rounds: the race must never let both in
        pair = list(lamps)
        out = race(2, lambda i, pair=pair: engine.fire(pair[i], "turn_on", people["qa"]))
        oks = [r for kind, r in out if kind == "ok"]
        errors = [e for kind, e in out if kind == "error"]
        assert len(oks) == 1 and len(errors) == 1, out
        assert isinstance(errors[0], ExclusiveStateTaken), errors[0]
        winner = oks[0].number
        assert errors[0].other == winner
        with engine.reader() as s:
            states = dict(s.execute(select(Record.number, Record.state)
                                    .where(Record.workflow_key == "lamp")).all())
        assert sorted(v for v in states.values() if v != "done") == ["dark", "lit"]
        engine.fire(winner, "finish", people["qa"])
        lamps = [n for n in lamps if n != winner]
        lamps.append(engine.start("lamp", people["qa"], {"title": "next", "room": "lab"}).number)
    assert_audit_verifies(engine)


def test_two_drafts_of_one_document_racing_one_wins(committed_engine, people):
    """R-DOC-9: two people starting version 2 of the same document at the same moment: one
    draft is created, the other start is refused and takes no record number."""
    engine = committed_engine

    def start(i: int) -> Any:
        return engine.start("controlled_document", people["owner"], {
            "title": "Deviation handling", "doc_number": "SOP-QA-001", "doc_type": "sop",
            "version": 2, "owner": people["owner"]})

    out = race(2, start)
    assert sorted(kind for kind, _ in out) == ["error", "ok"], out
    err = next(r for kind, r in out if kind == "error")
    assert isinstance(err, ExclusiveStateTaken), err
    with engine.reader() as s:
        numbers = s.execute(select(Record.number).where(
            Record.workflow_key == "controlled_document")).scalars().all()
    assert numbers == ["DOC-2026-0001"]
    assert_audit_verifies(engine)
