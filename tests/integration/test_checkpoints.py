"""Signed checkpoints anchored outside the database (issue 13, item 2): what verify-audit alone
cannot see - the newest record deleted with its counter rewound, a chain's tail cut, an older
backup restored - is named against a checkpoint; a checkpoint is verified with the public key
alone; missing or garbled checkpoint files are one clear line. On SQLite and PostgreSQL
(21 CFR 11.10(c)(e), EU GMP Annex 11 §7, §9)."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from tests.conftest import TEST_KEY
from tests.factories import anchor_key_file, dba, sign
from workflow.audit import checkpoints, integrity
from workflow.cli import main
from workflow.engine.core import Engine
from workflow.errors import CheckpointError
from workflow.identity import enablement
from workflow.identity import users as identity
from workflow.keyring import AnchorKeys

ANCHOR = AnchorKeys.from_seeds({"a1": b"\x11" * 32}, "a1")
OTHER = AnchorKeys.from_seeds({"a1": b"\x22" * 32}, "a1")


def sql(engine: Engine, statement: str, **params: Any) -> list[Any]:
    """Plain SQL behind the application's back, in a transaction of its own, with the rights of
    a DBA (on PostgreSQL the application's runtime role may not touch the triggers)."""
    with dba(engine) as s:
        result = s.execute(text(statement), params)
        return result.all() if result.returns_rows else []


def unprotect(engine: Engine, table: str) -> None:
    with engine.reader() as s:
        name = s.get_bind().dialect.name
    if name == "sqlite":
        sql(engine, f"DROP TRIGGER {table}_no_update")
        sql(engine, f"DROP TRIGGER {table}_no_delete")
    else:
        sql(engine, f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")


def verify_problems(engine: Engine) -> list[str]:
    with engine.reader() as s:
        return [str(p) for p in integrity.verify(s, engine.signing_key).problems]


def since(engine: Engine, path: Path) -> list[str]:
    return [f"[{p.kind}] {p}" for p in checkpoints.verify_since(engine, path, ANCHOR)]


def capa(engine: Engine, people: dict[str, str], title: str = "Label mix-up") -> str:
    r = engine.start("capa", people["emp"], {"title": title, "description": "At QC."})
    engine.fire(r.number, "assign", people["qa"], {"owner": people["owner"]})
    return r.number


def test_a_checkpoint_is_signed_written_once_and_chained(engine, people, tmp_path):
    """R-SEC-14, R-SEC-13: a checkpoint holds every chain head and sequence, every record,
    the counters and definition hashes, signed with the anchor key (id a1); its file is
    read-only and never rewritten; the next one names it and its sha256."""
    number = capa(engine, people)
    first = checkpoints.take(engine, ANCHOR, tmp_path)
    second = checkpoints.take(engine, ANCHOR, tmp_path)
    assert first != second and checkpoints.files(tmp_path) == [first, second]
    assert stat.S_IMODE(first.stat().st_mode) == 0o444
    doc = checkpoints.load(first)
    body = doc["checkpoint"]
    assert doc["signature"]["key_id"] == "a1" and doc["signature"]["algorithm"] == "Ed25519"
    assert body["chains"]["system"]["seq"] > 0
    seq = sql(engine, "SELECT audit_seq FROM records WHERE number = :n", n=number)[0][0]
    assert any(r["number"] == number and r["seq"] == seq for r in body["records"].values())
    prefix, year, _ = number.split("-")
    assert body["counters"][f"{prefix}-{year}"] == 1
    assert any(k.startswith("capa v") for k in body["definitions"])
    nxt = checkpoints.load(second)["checkpoint"]["previous"]
    assert nxt["file"] == first.name
    assert checkpoints.signature_problem(doc, [ANCHOR.public_key("a1")]) is None
    assert "does not verify" in checkpoints.signature_problem(doc, [OTHER.public_key("a1")])
    assert since(engine, second) == []  # nothing happened since
    capa(engine, people, "Another")  # the database grew: it still extends the checkpoint
    assert since(engine, second) == []


def test_newest_record_deleted_and_counter_rewound_is_named_only_by_the_checkpoint(
        engine, people, tmp_path):
    """R-SEC-15, R-P11-10c-1, R-P11-10e-4: the newest record deleted with everything hanging on
    it and its counter rewound leaves no gap: verify-audit alone finds nothing; against the
    checkpoint the record and the counter are named."""
    capa(engine, people)
    gone = capa(engine, people, "To be deleted")
    path = checkpoints.take(engine, ANCHOR, tmp_path)
    rid, seq = sql(engine, "SELECT id, audit_seq FROM records WHERE number = :n", n=gone)[0]
    unprotect(engine, "audit_events")
    for stmt in ("DELETE FROM notifications WHERE outbox_id IN "
                 "(SELECT id FROM outbox WHERE record_id = :r)",
                 "DELETE FROM outbox WHERE record_id = :r", "DELETE FROM tasks WHERE record_id = :r",
                 "DELETE FROM timers WHERE record_id = :r",
                 "DELETE FROM record_people WHERE record_id = :r",  # the people index (0015)
                 "DELETE FROM audit_events WHERE record_id = :r", "DELETE FROM records WHERE id = :r"):
        sql(engine, stmt, r=rid)
    prefix, year, n = gone.split("-")
    sql(engine, "UPDATE record_counters SET last_value = :v WHERE prefix = :p AND year = :y",
        v=int(n) - 1, p=prefix, y=int(year))
    # the triggers come back as they were: verify-audit itself has nothing to say
    assert [p for p in verify_problems(engine) if "trigger" not in p] == []
    found = since(engine, path)
    assert found[0] == (f"[checkpoint] record:{rid}: record {gone} existed at the checkpoint of "
                        f"{checkpoints.load(path)['checkpoint']['created_at']} (chain at #{seq}) but "
                        "is gone: deleted outside the application, or an older backup was "
                        "restored")
    assert any(p.startswith(f"[checkpoint] record numbers {prefix}-{year}: the counter stands at "
                            f"{int(n) - 1}") for p in found), found


def test_cut_tails_are_named_against_the_checkpoint(engine, people, tmp_path):
    """R-SEC-15, R-P11-10e-4, R-A11-12-1: the system chain's last event cut with its head
    rewound, and a record's last event cut with the record row rewound: each chain is named
    with where it ends and where the checkpoint saw it."""
    number = capa(engine, people)
    path = checkpoints.take(engine, ANCHOR, tmp_path)
    unprotect(engine, "audit_events")
    head = sql(engine, "SELECT seq FROM audit_chains WHERE name = 'system'")[0][0]
    prev = sql(engine, "SELECT hash FROM audit_events WHERE chain = 'system' AND seq = :s",
               s=head - 1)[0][0]
    sql(engine, "DELETE FROM audit_events WHERE chain = 'system' AND seq = :s", s=head)
    sql(engine, "UPDATE audit_chains SET seq = :s, head = :h WHERE name = 'system'",
        s=head - 1, h=prev)
    rid, seq = sql(engine, "SELECT id, audit_seq FROM records WHERE number = :n", n=number)[0]
    prev_head = sql(engine, "SELECT prev_hash FROM audit_events WHERE record_id = :r AND seq = :s",
                    r=rid, s=seq)[0][0]
    sql(engine, "DELETE FROM audit_events WHERE record_id = :r AND seq = :s", r=rid, s=seq)
    sql(engine, "UPDATE records SET audit_seq = :s, audit_head = :h WHERE id = :r",
        s=seq - 1, h=prev_head, r=rid)
    found = since(engine, path)
    when = checkpoints.load(path)["checkpoint"]["created_at"]
    assert (f"[checkpoint] system: the system chain: the chain ends at #{head - 1} but the "
            f"checkpoint of {when} saw it at #{head}: events were cut from its end, or an older "
            "backup was restored") in found
    assert (f"[checkpoint] record:{rid}: record {number}: the chain ends at #{seq - 1} but the "
            f"checkpoint of {when} saw it at #{seq}: events were cut from its end, or an older "
            "backup was restored") in found


def test_a_tampered_or_foreign_checkpoint_is_named(engine, people, tmp_path):
    """R-SEC-16: a checkpoint edited after signing (a head rewound in the file) or signed by
    another key fails its signature check."""
    capa(engine, people)
    path = checkpoints.take(engine, ANCHOR, tmp_path)
    doc = json.loads(path.read_text())
    doc["checkpoint"]["chains"]["system"]["seq"] -= 1
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    found = since(engine, edited)
    assert found[0].startswith("[checkpoint] checkpoint edited.json: the signature (anchor key "
                               "a1") and "does not verify" in found[0]
    _, problems = checkpoints.check_file(path, [OTHER.public_key("a1")])
    assert problems and "does not verify" in problems[0]


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ("{not json", "is not JSON"),
    ('{"checkpoint": {"format": "other"}}', "is not a checkpoint (expected format "
                                             "qms-checkpoint/1"),
    ('{"checkpoint": {"format": "qms-checkpoint/1"}, "signature": {}}', "lacks created_at"),
])
def test_a_missing_or_garbled_checkpoint_is_a_clear_error(tmp_path, content, message):
    """R-SEC-15: bad input - a missing or garbled checkpoint file - is a named error."""
    path = tmp_path / "cp.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CheckpointError) as exc:
        checkpoints.load(path)
    assert message in exc.value.message and str(path) in exc.value.message


# --------------------------------------------------------------------------- the CLI


def _backup(url: str, tmp_path: Path, admin_url: str) -> str:
    """A consistent copy of the database (SQLite: the backup API; PostgreSQL: a database
    created from it as a template): yesterday's backup."""
    if url.startswith("sqlite"):
        src = url.removeprefix("sqlite:///")
        dst = tmp_path / "backup.db"
        with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
            a.backup(b)
        return f"sqlite:///{dst}"
    name = f"qms_bak_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")  # may create databases
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{url.rsplit("/", 1)[1]}"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def _drop(url: str, admin_url: str) -> None:
    if url.startswith("postgresql"):
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()


def test_restoring_an_older_backup_is_named_against_the_checkpoint(
        committed_engine, committed_url, database_url, tmp_path):
    """R-SEC-15, R-SEC-14: the database is backed up, work goes on, the
    hourly checkpoint is written, then the older backup is restored. ``qms verify-audit``
    alone says OK (the backup is consistent in itself); with ``--since-checkpoint`` it exits
    non-zero naming the lost record, the rolled-back chains and the counter."""
    eng = committed_engine
    with eng.unit() as s:
        actor = identity.system_user(s)
        for name, roles in (("emma", ["employee"]), ("quinn", ["qa", "employee"]),
                            ("olga", ["capa_owner"])):
            u = identity.create_user(s, name, name.title(), actor=actor, reason="test")
            enablement.enable_for_system(s, u, reason="test")  # may sign (as conftest's people)
            for r in roles:
                identity.grant_role(s, u, r, actor=actor, reason="test")
    people = {"emp": "emma", "qa": "quinn", "owner": "olga"}
    first = capa(eng, people)
    eng.sessions.kw["bind"].dispose()
    backup = _backup(committed_url, tmp_path, database_url)
    try:
        eng.fire(first, "submit_root_cause", "olga", {"root_cause_category": "method",
                                                      "root_cause": "rc"})
        later = capa(eng, people, "Raised after the backup")
        eng.fire(later, "cancel", "quinn", reason="Duplicate", signature=sign("quinn"))
        with eng.unit() as s:  # a system event after the backup: a role granted
            identity.grant_role(s, identity.get_user(s, "olga"), "qa",
                                actor=identity.system_user(s), reason="test")
        eng.sessions.kw["bind"].dispose()
        env = {"QMS_DATABASE_URL": committed_url, "QMS_SIGNATURE_KEY": TEST_KEY.hex(),
               "QMS_INSTANCE_DIR": str(tmp_path), "QMS_CHECKPOINT_DIR": str(tmp_path / "cps")}
        anchor_key_file(tmp_path / "anchor.key")
        runner = CliRunner(env=env)
        made = runner.invoke(main, ["audit", "checkpoint"])
        assert made.exit_code == 0 and made.output.startswith("checkpoint "), made.output
        assert runner.invoke(main, ["verify-audit", "--since-checkpoint"]).exit_code == 0

        restored = {"QMS_DATABASE_URL": backup}  # yesterday's backup, restored
        plain = runner.invoke(main, ["verify-audit"], env=restored)
        assert plain.exit_code == 0 and plain.output.startswith("OK:")  # blind without it
        r = runner.invoke(main, ["verify-audit", "--since-checkpoint"], env=restored)
        assert r.exit_code == 1
        out = r.output
        assert "FAILED" in out
        assert f"record {later} existed at the checkpoint of" in out and "is gone" in out
        assert re.search(f"record {first}: the chain ends at #\\d+ but the checkpoint of .* saw "
                         "it at #\\d+: events were cut from its end, or an older backup was "
                         "restored", out), out
        assert "the system chain: the chain ends at #" in out
        assert "[checkpoint] record numbers CAPA-" in out
        assert "Traceback" not in out
    finally:
        _drop(backup, database_url)


def test_verify_audit_since_a_missing_checkpoint_says_so(committed_url, tmp_path):
    """R-SEC-15: ``--since-checkpoint`` with no checkpoint written yet, a missing file or a
    garbled one: one line naming it, exit status 1, nothing verified."""
    env = {"QMS_DATABASE_URL": committed_url, "QMS_SIGNATURE_KEY": TEST_KEY.hex(),
           "QMS_INSTANCE_DIR": str(tmp_path), "QMS_CHECKPOINT_DIR": str(tmp_path / "none")}
    runner = CliRunner(env=env)
    r = runner.invoke(main, ["verify-audit", "--since-checkpoint"])
    assert r.exit_code == 1
    assert r.output.strip() == (f"error: no checkpoint in {tmp_path / 'none'}: write one with "
                                "`qms audit checkpoint` (the scheduler writes one every hour)")
    (tmp_path / "bad.json").write_text("garbage")
    r = runner.invoke(main, ["verify-audit", "--since-checkpoint", str(tmp_path / "bad.json")])
    assert r.exit_code == 1 and "is not JSON" in r.output and "Traceback" not in r.output
    r = runner.invoke(main, ["verify-audit", "--since-checkpoint", str(tmp_path / "nope.json")])
    assert r.exit_code == 1 and "does not exist" in r.output


def test_verify_checkpoint_offline_with_the_public_key(committed_engine, committed_url, tmp_path):
    """R-SEC-16, R-SEC-13: ``qms audit verify-checkpoint FILE --public-key KEY`` needs no
    database and no secret: OK for the file as written; FAILED for an edited file, another
    system's key, or an earlier checkpoint file changed after the next one was signed."""
    env = {"QMS_DATABASE_URL": committed_url, "QMS_SIGNATURE_KEY": TEST_KEY.hex(),
           "QMS_INSTANCE_DIR": str(tmp_path), "QMS_CHECKPOINT_DIR": str(tmp_path / "cps")}
    anchor_key_file(tmp_path / "anchor.key")
    runner = CliRunner(env=env)
    assert runner.invoke(main, ["audit", "checkpoint"]).exit_code == 0
    assert runner.invoke(main, ["audit", "checkpoint"]).exit_code == 0
    assert runner.invoke(main, ["keys", "export-public", "-o", str(tmp_path / "pub")]
                         ).exit_code == 0
    pem = tmp_path / "pub" / "qms-anchor-a1.pem"
    first, second = checkpoints.files(tmp_path / "cps")
    offline = CliRunner(env={"QMS_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
                             "QMS_SIGNATURE_KEY": "", "QMS_INSTANCE_DIR": str(tmp_path / "x")})
    ok = offline.invoke(main, ["audit", "verify-checkpoint", str(second), "--public-key", str(pem)])
    assert ok.exit_code == 0 and ok.output.startswith(f"OK: {second} signed "), ok.output
    assert not (tmp_path / "x").exists()  # no key was read or created

    foreign = tmp_path / "foreign.pem"
    foreign.write_text(OTHER.public_pem("a1"))
    bad = offline.invoke(main, ["audit", "verify-checkpoint", str(second), "--public-key",
                                str(foreign)])
    assert bad.exit_code == 1 and "does not verify with the public key" in bad.output

    first.chmod(0o644)
    first.write_text(first.read_text().replace('"seq": ', '"seq": 1', 1))
    chained = offline.invoke(main, ["audit", "verify-checkpoint", str(second), "--public-key",
                                    str(pem)])
    assert chained.exit_code == 1
    assert f"the checkpoint before it, {first.name}, was changed after this one was signed" \
        in chained.output
    notpem = offline.invoke(main, ["audit", "verify-checkpoint", str(second), "--public-key",
                                   str(first)])
    assert notpem.exit_code == 1 and "is not an Ed25519 public key in PEM form" in notpem.output


def test_the_hourly_job_writes_a_checkpoint(engine, people, tmp_path, monkeypatch):
    """R-SEC-14: the shipped schedule runs ``audit_checkpoint`` every hour into
    QMS_CHECKPOINT_DIR (the anchor key comes from QMS_ANCHOR_KEY_FILE)."""
    from workflow.scheduling import runner
    from workflow.scheduling import schedules as schedule_file
    from workflow.scheduling.jobs import default_jobs

    monkeypatch.setenv("QMS_CHECKPOINT_DIR", str(tmp_path / "cps"))
    monkeypatch.setenv("QMS_ANCHOR_KEY_FILE", str(anchor_key_file(tmp_path / "anchor.key")))
    jobs = default_jobs()
    schedule = schedule_file.load_schedules(jobs=jobs)["audit_checkpoint_hourly"]
    assert (schedule.cron, schedule.period) == ("0 * * * *", "hour")
    runner.run_now(engine, schedule, jobs=jobs)
    [written] = checkpoints.files(tmp_path / "cps")
    doc = checkpoints.load(written)
    anchor = AnchorKeys.from_seeds(
        {"a1": bytes.fromhex((tmp_path / "anchor.key").read_text().split()[-1])}, "a1")
    assert checkpoints.signature_problem(doc, [anchor.public_key("a1")]) is None
