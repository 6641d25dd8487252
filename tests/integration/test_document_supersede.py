"""One effective version per document (issue 19): the general ``exclusive:`` control and the
``fire_on_matching`` action - entering "effective" supersedes the version in force before, as
the system, in the same unit, audited on both records; a second effective version, a second
version in work or a version number used twice is refused with a clear message and nothing
written. Runs on SQLite and, with QMS_TEST_DATABASE_URL, on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.integration import test_controlled_documents as base
from tests.integration.test_controlled_documents import (
    approve,
    day,
    new_version,
    to_approval,
    upload,
)
from workflow import clock
from workflow.audit import integrity
from workflow.db.models import AuditEvent, Record, Timer, TimerStatus
from workflow.errors import DefinitionError, ExclusiveStateTaken
from workflow.queries import documents
from workflow.spec.load import load_text

PDF = b"%PDF-1.4\n%%EOF\n"
crew = base.crew  # the fixtures, shared
store = base.store


def approved(engine, crew, version, number="SOP-QA-001", days=20):
    n = new_version(engine, crew, version, number)
    to_approval(engine, crew, n, upload(engine, crew["author"], f"{number}-{version}.pdf",
                                        PDF + f"{number} {version}".encode()))
    approve(engine, crew, n, day(days))
    return n


def go_live(days=21):
    clock.set(clock.now() + timedelta(days=days))


def trail(engine, number):
    with engine.reader() as s:
        rid = s.execute(select(Record.id).where(Record.number == number)).scalar_one()
        return s.execute(select(AuditEvent).where(AuditEvent.record_id == rid)
                         .order_by(AuditEvent.seq)).scalars().all()


def test_next_version_supersedes_exactly_the_previous_one(engine, crew, store):
    """R-DOC-9 R-DOC-10 R-DOC-4: when version 2 becomes effective on its date (timer), version
    1 is superseded by the system in the same unit, both trails record it; when version 3
    follows, only version 2 is superseded (version 1 and another document are untouched)."""
    v1 = approved(engine, crew, 1)
    other = approved(engine, crew, 1, number="POL-IS-001")
    go_live()
    engine.run_due_timers()
    assert engine.get(v1).state == engine.get(other).state == "effective"
    v2 = approved(engine, crew, 2)
    go_live()
    assert engine.run_due_timers() == [f"{v2}: make_effective -> effective"]
    assert engine.get(v1).state == "superseded" and engine.get(v2).state == "effective"
    last = trail(engine, v1)[-1]
    assert (last.action, last.from_state, last.to_state) == ("transition", "effective",
                                                             "superseded")
    assert last.actor_name == "System" or "system" in last.actor_name.lower()
    assert v2 in last.reason and "Effective" in last.reason
    fired = [e for e in trail(engine, v2) if e.action == "fired_on_matching"]
    assert len(fired) == 1 and fired[0].changes["record"] == v1
    v1_version = engine.get(v1).version

    v3 = approved(engine, crew, 3)
    go_live()
    engine.run_due_timers()
    assert [engine.get(n).state for n in (v1, v2, v3)] == ["superseded", "superseded",
                                                           "effective"]
    assert engine.get(v1).version == v1_version  # not touched again
    assert engine.get(other).state == "effective"
    with engine.reader() as s:
        assert documents.effective_version(s, "SOP-QA-001").version == 3
        assert [(v.version, v.state) for v in documents.document_versions(s, "SOP-QA-001")] \
            == [(1, "superseded"), (2, "superseded"), (3, "effective")]
        assert integrity.verify(s, engine.signing_key).problems == []


def test_a_second_effective_version_is_refused_and_nothing_written(engine, crew, store):
    """R-DOC-9: a lower version approved after a higher one is in force does not supersede
    it; making it effective is refused with a message naming the version in force, by hand
    and by the timer (marked failed with the reason), and nothing is written."""
    v3 = approved(engine, crew, 3)
    go_live()
    engine.run_due_timers()
    v2 = approved(engine, crew, 2)
    go_live()
    before = engine.get(v2).version
    with pytest.raises(ExclusiveStateTaken, match="one effective version") as exc:
        engine.fire(v2, "make_effective", crew["qa"])
    assert exc.value.other == v3 and "already is 'Effective'" in exc.value.message
    assert engine.get(v2).state == "approved" and engine.get(v2).version == before
    assert engine.get(v3).state == "effective"
    out = engine.run_due_timers()
    assert len(out) == 1 and "failed" in out[0] and v3 in out[0]
    with engine.reader() as s:
        t = s.execute(select(Timer).where(Timer.record_id == engine.get(v2).id)).scalar_one()
        assert t.status == TimerStatus.FAILED and "one effective version" in t.last_error


def test_one_version_in_work_and_each_version_number_once(engine, crew, store):
    """R-DOC-9: a second draft of a document while one is in work, or a version number used
    before, is refused at start with a clear message; no record is created."""
    approved(engine, crew, 1)
    with engine.reader() as s:
        count = s.execute(select(Record.id)).all()
    with pytest.raises(ExclusiveStateTaken, match="one version in work"):
        new_version(engine, crew, 2)
    go_live()
    engine.run_due_timers()
    with pytest.raises(ExclusiveStateTaken, match="Each version number of a document is used once"):
        new_version(engine, crew, 1)
    with engine.reader() as s:
        assert len(s.execute(select(Record.id)).all()) == len(count)
    assert engine.get(new_version(engine, crew, 2)).state == "draft"
    # another document may have its own version 1 in work at the same time
    assert engine.get(new_version(engine, crew, 1, number="SOP-QA-002")).state == "draft"


BAD = """
key: lamp
title: Lamp
prefix: LMP
roles: {qa: QA}
fields:
  title: {type: string}
  room: {type: string}
  notes: {type: text}
exclusive:
  - key: [room, colour]
    states: [lit, dimmed]
  - key: [notes]
    states: [lit]
start: {roles: [qa], edits: [title, room]}
states:
  dark: {initial: true, on_enter: [{fire_on_matching: {transition: flip, match: [room, size]}}]}
  lit:
    on_enter:
      - fire_on_matching: {transition: turn_on, match: [room], when: "other['room'] == shade"}
  done: {final: true, outcome: done}
transitions:
  - {name: turn_on, from: dark, to: lit, roles: [qa]}
  - {name: finish, from: lit, to: done, roles: [qa]}
"""


def test_wrong_exclusive_rules_and_matching_actions_are_named_at_their_line():
    """R-DOC-9 R-DOC-10: an exclusive key naming an unknown or free-text field, an unknown
    state, a fire_on_matching action with an unknown transition or field, a step back into
    its own state or an unknown name in when: are refused, each with its line."""
    with pytest.raises(DefinitionError) as exc:
        load_text(BAD, origin="lamp.yaml")
    text = str(exc.value)
    for expected in ("exclusive key names unknown field 'colour'",
                     "exclusive names unknown state 'dimmed'",
                     "exclusive key field 'notes' is of type text",
                     "fire_on_matching fires unknown transition 'flip'",
                     "fire_on_matching matches on unknown field 'size'",
                     "which enters 'lit' again",
                     "expression uses unknown name 'shade'"):
        assert expected in text, text
    assert "lamp.yaml:10:" in text or "lamp.yaml:11:" in text
