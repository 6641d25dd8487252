"""Key management (issue 13, item 5): keys by id on every MAC, seal, audit hash and TOTP
secret, rotation that keeps everything made with an older key verifiable, keys from the
settings (file, environment) or a provider hook, and a server key that never reaches the
database or the logs (21 CFR 11.10(c)(e), EU GMP Annex 11 §7, §12)."""

from __future__ import annotations

import base64
import logging
import stat
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from tests.conftest import TEST_KEY
from tests.factories import sign
from workflow import clock
from workflow.audit import integrity
from workflow.bootstrap import action_kinds
from workflow.cli import main
from workflow.db import engines as db
from workflow.db.models import AuditEvent, Base, Record, RoleGrant, Signature, User
from workflow.db.seals import mac_ok
from workflow.engine.core import Engine
from workflow.errors import SecondFactorFailed
from workflow.identity import passwords, sessions
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.identity.totp import begin_totp_enrolment, confirm_totp_enrolment, reset_totp
from workflow.keyring import KeyRing, as_ring
from workflow.signatures.part11 import Part11Verifier

NEW_KEY = bytes.fromhex("5a" * 32)
PW = "Correct-Horse-Battery-9"
POLICY = Policy(
    min_length=12,
    history=5,
    max_age_days=90,
    lockout_threshold=5,
    idle_minutes=15,
    session_hours=12,
    totp_required_roles=("qa", "admin"),
)


def rotated(engine: Engine, *, part11: bool = False) -> Engine:
    """The same database seen by a process restarted after ``qms keys rotate hmac``: the old
    key k1 plus the new current key k2 (``part11``: with the real credential verifier)."""
    ring = as_ring(TEST_KEY).with_key("k2", NEW_KEY)
    sessions_ = sessionmaker(
        bind=engine.sessions.kw["bind"], join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    new = Engine(sessions_, ring, registry=engine.registry, actions=action_kinds())
    if part11:
        new.verifier = Part11Verifier(ring, POLICY)
    return new


def capa_at_plan_approval(engine: Engine) -> str:
    r = engine.start("capa", "emma", {"title": "t", "description": "d"})
    engine.fire(r.number, "assign", "quinn", {"owner": "olga"})
    engine.fire(r.number, "submit_root_cause", "olga", {"root_cause_category": "method", "root_cause": "rc"})
    engine.fire(
        r.number,
        "submit_plan",
        "olga",
        {"actions": [{"description": "a", "done": True}], "effectiveness_criteria": "c"},
    )
    return r.number


def problems(engine: Engine, key: object) -> list[str]:
    with engine.reader() as s:
        return [str(p) for p in integrity.verify(s, key).problems]  # type: ignore[arg-type]


def test_rotation_keeps_everything_made_with_the_old_key_verifiable(engine, people):
    """R-SEC-11, R-P11-10e-4, R-P11-70-1 (stored data stays verifiable): events,
    seals and signatures made with k1 verify after the rotation; new ones carry k2; a ring
    without the key a tag names does not verify it."""
    number = capa_at_plan_approval(engine)
    engine.fire(number, "approve_plan", "quentin", signature=sign("quentin"))
    new = rotated(engine)
    assert problems(new, new.signing_key) == []  # nothing re-signed, all still verifies

    new.fire(number, "complete_implementation", "olga", {"implementation_summary": "done"})
    new.fire(number, "verify", "quinn", {"verification_evidence": "e"}, signature=sign("quinn"))
    with new.unit() as s:  # a security row changed under k2
        identity.grant_role(
            s, identity.get_user(s, "emma"), "qa", actor=identity.system_user(s), reason="test"
        )

    with new.reader() as s:
        rec = s.execute(select(Record).where(Record.number == number)).scalar_one()
        macs = [
            m
            for (m,) in s.execute(
                select(Signature.mac).where(Signature.record_id == rec.id).order_by(Signature.id)
            )
        ]
        hashes = [
            h
            for (h,) in s.execute(
                select(AuditEvent.hash).where(AuditEvent.record_id == rec.id).order_by(AuditEvent.seq)
            )
        ]
        emma = s.execute(select(User).where(User.username == "emma")).scalar_one()
        grants = [
            g
            for (g,) in s.execute(
                select(RoleGrant.seal).where(RoleGrant.user_id == emma.id).order_by(RoleGrant.id)
            )
        ]
        assert [m.split(":")[0] for m in macs] == ["k1", "k2"]
        assert hashes[0].startswith("k1:") and hashes[-1].startswith("k2:")
        assert rec.seal.startswith("k2:") and emma.seal.startswith("k1:")
        assert [g.split(":")[0] for g in grants] == ["k1", "k2"]
    assert problems(new, new.signing_key) == []
    # the key ids are honoured: each key alone fails on what the other made
    only_old = problems(new, TEST_KEY)
    assert any("content does not match its hash" in p for p in only_old)
    only_new = problems(new, KeyRing.single(NEW_KEY, "k2"))
    assert any("does not verify" in p or "does not match" in p for p in only_new)
    # the signature given before the rotation is still bound to its record
    with new.reader() as s:
        first = (
            s.execute(select(Signature).where(Signature.record_id == rec.id).order_by(Signature.id))
            .scalars()
            .first()
        )
        assert mac_ok(new.signing_key, first, number)
        assert not mac_ok(new.signing_key, first, "CAPA-2026-9999")


def test_totp_and_recovery_codes_survive_a_rotation(engine, make_user):
    """R-SEC-11, R-SEC-3: an authenticator enrolled (secret encrypted with k1) keeps working
    after the rotation, a recovery code made under k1 still works once, a new enrolment is
    encrypted with k2."""
    make_user("quinn", "qa", "employee")
    make_user("adam", "admin")
    engine.verifier = Part11Verifier(TEST_KEY, POLICY)
    with engine.unit() as s:
        passwords.set_password(
            s,
            identity.get_user(s, "quinn"),
            PW,
            actor=identity.system_user(s),
            policy=POLICY,
            temporary=False,
        )
    e = begin_totp_enrolment(engine, "quinn", POLICY)
    totp = pyotp.TOTP(e.secret)
    codes = confirm_totp_enrolment(engine, "quinn", totp.at(clock.now()))
    with engine.reader() as s:
        assert identity.get_user(s, "quinn").totp_secret.startswith("v2:k1:")

    new = rotated(engine, part11=True)
    clock.advance(timedelta(seconds=60))
    def second(code: str) -> str:
        step = sessions.check_login_password(new, "quinn", PW, POLICY).challenge
        return sessions.check_login_totp(new, step, code, POLICY).second_factor

    assert second(totp.at(clock.now())) == "totp"
    assert second(codes[0]) == "recovery"
    with pytest.raises(SecondFactorFailed):
        second(codes[0])

    reset_totp(new, "quinn", actor="adam", reason="new phone")
    e2 = begin_totp_enrolment(new, "quinn", POLICY)
    codes2 = confirm_totp_enrolment(new, "quinn", pyotp.TOTP(e2.secret).at(clock.now()))
    with new.reader() as s:
        assert identity.get_user(s, "quinn").totp_secret.startswith("v2:k2:")
    assert second(codes2[0]) == "recovery"
    assert problems(new, new.signing_key) == []


# --------------------------------------------------------------------------- the CLI


def _forms(key: bytes) -> list[str]:
    """Every way a key could be written down."""
    return [
        key.hex(),
        key.hex().upper(),
        base64.b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
    ]


def _dump(url: str) -> str:
    """Every row of every table, as text (a database dump that works on both databases)."""
    dbe = db.make_engine(url)
    out = []
    with dbe.connect() as c:
        for t in Base.metadata.sorted_tables:
            out.extend(repr(tuple(r)) for r in c.execute(select(t)))
    dbe.dispose()
    return "\n".join(out)


@pytest.fixture
def key_env(committed_url: str, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment with the HMAC key in a key file written before key ids existed
    (one bare hex line: the key k1), and the anchor key file in the instance folder."""
    (tmp_path / "signature.key").write_text(TEST_KEY.hex() + "\n")
    return {
        "QMS_DATABASE_URL": committed_url,
        "QMS_SIGNATURE_KEY": "",
        "QMS_INSTANCE_DIR": str(tmp_path),
        "QMS_SIGNATURE_KEY_FILE": str(tmp_path / "signature.key"),
    }


def test_qms_keys_rotate_hmac_and_the_key_never_reaches_the_database_or_logs(key_env, tmp_path, caplog):
    """R-SEC-11, R-SEC-12, R-A11-12-1: ``qms keys rotate hmac`` adds k2 to the key file
    (owner-only, k1 kept), records the rotation on the system trail with k2, verify-audit
    stays OK; no form of either key is in the database dump, the command output or the
    logs."""
    caplog.set_level(logging.DEBUG)
    runner = CliRunner(env=key_env)
    out = []
    for args in (
        ["-v", "init"],
        ["-v", "verify-audit"],
        ["-v", "keys", "rotate", "hmac"],
        ["-v", "keys", "list"],
        ["-v", "verify-audit"],
    ):
        r = runner.invoke(main, args, catch_exceptions=False)
        assert r.exit_code == 0, (args, r.output)
        out.append(r.output)
    assert "new current key k2" in out[2]
    assert out[4].startswith("OK:")
    assert "k1\n" in out[3] and "k2  current" in out[3] and "a1" in out[3]
    key_file = tmp_path / "signature.key"
    lines = [ln.split() for ln in key_file.read_text().splitlines() if ln and not ln.startswith("#")]
    assert [ln[0] for ln in lines] == ["k1", "k2"] and lines[0][1] == TEST_KEY.hex()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    k2 = bytes.fromhex(lines[1][1])

    dbe = db.make_engine(key_env["QMS_DATABASE_URL"])
    with dbe.connect() as c:
        e = AuditEvent.__table__.c
        rotated_ev = c.execute(select(e.hash, e.changes).where(e.action == "key_rotated")).one()
        first = c.execute(select(e.hash).where(e.chain == "system", e.seq == 1)).scalar_one()
    dbe.dispose()
    assert rotated_ev.hash.startswith("k2:") and rotated_ev.changes["key_id"] == "k2"
    assert first.startswith("k1:")

    dump = _dump(key_env["QMS_DATABASE_URL"])
    logs = caplog.text + "\n".join(out)
    for key in (TEST_KEY, k2):
        for form in _forms(key):
            assert form not in dump
            assert form not in logs


def test_rotating_a_key_from_the_environment_is_refused_clearly(committed_url, tmp_path):
    """R-SEC-12: with the key in QMS_SIGNATURE_KEY the command cannot rotate it: one line
    saying what to do, exit status 1, nothing changed."""
    runner = CliRunner(
        env={
            "QMS_DATABASE_URL": committed_url,
            "QMS_SIGNATURE_KEY": "22" * 32,
            "QMS_INSTANCE_DIR": str(tmp_path),
        }
    )
    assert runner.invoke(main, ["init"]).exit_code == 0
    r = runner.invoke(main, ["keys", "rotate", "hmac"])
    assert r.exit_code == 1
    assert "error: the HMAC key comes from QMS_SIGNATURE_KEY" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "signature.key").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not-a-key\n", "line 1: the key is not hex"),
        ("k1 " + "ab" * 32 + "\nk1 " + "cd" * 32 + "\n", "line 2: key id k1 appears twice"),
        ("K 1 2\n", "line 1: expected `<key id> <hex key>`"),
        ("k1 abcd\n", "line 1: the key must be at least 32 bytes"),
    ],
)
def test_a_malformed_key_file_is_named_with_its_line(committed_url, tmp_path, content, message):
    """R-SEC-12: a malformed key file stops the command with one line naming the file and the
    line (never the key), exit status 1."""
    key_file = tmp_path / "signature.key"
    key_file.write_text(content)
    runner = CliRunner(
        env={
            "QMS_DATABASE_URL": committed_url,
            "QMS_SIGNATURE_KEY": "",
            "QMS_SIGNATURE_KEY_FILE": str(key_file),
            "QMS_INSTANCE_DIR": str(tmp_path),
        }
    )
    r = runner.invoke(main, ["verify-audit"])
    assert r.exit_code == 1
    assert f"error: {key_file} {message}" in r.output
    assert "Traceback" not in r.output and "ab" * 32 not in r.output


def test_a_key_provider_hook_supplies_the_keys(committed_url, tmp_path, monkeypatch):
    """R-SEC-12: QMS_KEY_PROVIDER=module:factory replaces the key files (a KMS): the CLI uses
    its keys and its rotation; a hook that cannot be loaded is one clear line."""
    import sys
    import types

    from workflow.keyring import AnchorKeys

    calls: list[str] = []

    class Kms:
        def __init__(self, settings):
            self.ring = KeyRing({"kms-1": b"\x07" * 32}, "kms-1")

        def hmac_keys(self):
            return self.ring

        def anchor_keys(self):
            return AnchorKeys.from_seeds({"kms-a1": b"\x09" * 32}, "kms-a1")

        def rotate(self, kind):
            calls.append(kind)
            return "kms-2"

    module = types.ModuleType("qms_test_kms")
    module.provider = Kms  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "qms_test_kms", module)
    env = {
        "QMS_DATABASE_URL": committed_url,
        "QMS_SIGNATURE_KEY": "",
        "QMS_INSTANCE_DIR": str(tmp_path),
        "QMS_KEY_PROVIDER": "qms_test_kms:provider",
    }
    runner = CliRunner(env=env)
    assert runner.invoke(main, ["init"]).exit_code == 0
    r = runner.invoke(main, ["keys", "list"])
    assert "kms-1  current" in r.output and "kms-a1" in r.output
    assert not (tmp_path / "signature.key").exists()
    dbe = db.make_engine(committed_url)
    with dbe.connect() as c:
        h = c.execute(select(AuditEvent.__table__.c.hash).limit(1)).scalar_one()
    dbe.dispose()
    assert h.startswith("kms-1:")
    runner.invoke(main, ["keys", "rotate", "anchor"])
    assert calls == ["anchor"]
    bad = runner.invoke(main, ["verify-audit"], env={"QMS_KEY_PROVIDER": "no_such_mod:f"})
    assert bad.exit_code == 1 and "error: QMS_KEY_PROVIDER 'no_such_mod:f' cannot be loaded" in bad.output
