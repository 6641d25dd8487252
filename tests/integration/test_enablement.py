"""Signing enablement (issue 14, item 6; 21 CFR 11.100(b), 11.10(j)): nobody signs until an
administrator recorded that their identity was verified and they accepted the current
e-signature policy with their own signature; both audited, sealed and shown."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text, update

from tests.factories import sign
from workflow.audit import integrity
from workflow.db.models import AuditEvent, Signature, SigningEnablement, User
from workflow.errors import CredentialsRejected, NotAuthorized, SigningNotEnabled, WorkflowError
from workflow.identity import enablement, passwords
from workflow.identity import users as identity
from workflow.identity.policy import Policy

PW = "Correct-Horse-Battery-9"


@pytest.fixture
def org(engine, make_user):
    """ada (admin) and emma (employee) enabled by the factory; rita (qa) a new person: a
    password, the role, nothing else."""
    make_user("ada", "admin", full_name="Ada Admin")
    make_user("ben", "admin", full_name="Ben Admin")
    make_user("emma", "employee")
    with engine.unit() as s:
        system = identity.system_user(s)
        u = identity.create_user(s, "rita", "Rita Reviewer", actor=system, reason="hire")
        identity.grant_role(s, u, "qa", actor=system, reason="hire")
        passwords.set_password(s, u, PW, actor=system, policy=Policy())


def cancel_as(engine, who: str):
    number = engine.start("capa", "emma", {"title": "t", "description": "d"}).number
    return number, lambda: engine.fire(number, "cancel", who, reason="duplicate", signature=sign(who))


def signatures(engine) -> int:
    with engine.reader() as s:
        return s.execute(select(func.count()).select_from(Signature)).scalar_one()


def last(engine, action: str) -> AuditEvent:
    with engine.reader() as s:
        return s.execute(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id.desc()).limit(1)
        ).scalar_one()


def test_nobody_signs_before_both_facts_exist(engine, org):
    """R-P11-100b-1 R-P11-10j-1: rita holds qa but cannot sign: the refusal names both missing
    facts and nothing is signed; after ben records her identity, only the policy is missing;
    after she accepts it with her password she signs."""
    _, cancel = cancel_as(engine, "rita")
    before = signatures(engine)
    with pytest.raises(SigningNotEnabled) as exc:
        cancel()
    assert str(exc.value) == (
        "rita cannot sign yet: an administrator has not yet recorded that your identity was "
        "verified; you have not accepted the e-signature policy (version 1) on your account "
        "page (E-signature policy). Nothing was signed."
    )
    assert signatures(engine) == before
    enablement.record_identity_verified(
        engine, "rita", actor="ben", method="passport checked in person", reason="new QA reviewer"
    )
    with pytest.raises(SigningNotEnabled) as exc:
        cancel()
    assert exc.value.missing == [
        "you have not accepted the e-signature policy (version 1) on your account page (E-signature policy)"
    ]
    enablement.accept_policy(engine, "rita", password=PW, code=None, version="1")
    cancel()
    assert signatures(engine) == before + 1
    ev = last(engine, "identity_verified")
    assert (ev.actor_name, ev.changes["method"], ev.reason) == (
        "Ben Admin",
        "passport checked in person",
        "new QA reviewer",
    )
    ev = last(engine, "esign_policy_accepted")
    assert ev.actor_name == "Rita Reviewer" and ev.changes["statement"] == (
        "I agree that my electronic signature is the legally binding equivalent of my handwritten signature."
    )
    assert ev.changes["sha256"] == enablement.current_policy().sha256
    with engine.reader() as s:
        st = enablement.status(s, identity.get_user(s, "rita"))
        assert st.can_sign and st.identity.by == "Ben Admin"
        assert integrity.verify(s, engine.signing_key).ok


def test_only_another_administrator_records_identity_verification(engine, org):
    """R-P11-100b-1: an administrator cannot record their own verification, a non-admin none,
    and a method is required; nothing is recorded."""
    with pytest.raises(WorkflowError, match="your own identity; another administrator must"):
        enablement.record_identity_verified(engine, "ada", actor="ada", method="mirror", reason="x")
    with pytest.raises(NotAuthorized, match="Only administrators"):
        enablement.record_identity_verified(engine, "rita", actor="emma", method="x", reason="x")
    with pytest.raises(WorkflowError, match="Say how the identity was verified"):
        enablement.record_identity_verified(engine, "rita", actor="ada", method=" ", reason="x")
    with engine.reader() as s:
        rita = identity.get_user(s, "rita")
        assert enablement.status(s, rita).identity is None


def test_a_wrong_password_accepts_nothing_and_counts_toward_lockout(engine, org):
    """R-P11-10j-1 R-P11-300d-1: accepting the policy is a signature: a wrong password is
    refused and counted; a stale policy version is refused."""
    with pytest.raises(CredentialsRejected, match="The password is wrong; the policy was not accepted."):
        enablement.accept_policy(engine, "rita", password="wrong-one-here", code=None, version="1")
    with pytest.raises(WorkflowError, match="The e-signature policy changed"):
        enablement.accept_policy(engine, "rita", password=PW, code=None, version="0")
    with engine.reader() as s:
        rita = identity.get_user(s, "rita")
        assert rita.failed_attempts == 1 and enablement.status(s, rita).policy is None


def test_a_new_policy_version_must_be_accepted_again(engine, org, tmp_path, monkeypatch):
    """R-P11-10j-1: QMS_ESIGN_POLICY_FILE with a new version: emma (enabled for version 1)
    cannot sign until she accepts version 2; the old acceptance is shown."""
    policy = tmp_path / "policy.txt"
    policy.write_text("Version: 2\nTitle: Our policy\n\nSign only what you read.\n")
    monkeypatch.setenv("QMS_ESIGN_POLICY_FILE", str(policy))
    with engine.unit() as s:
        passwords.set_password(
            s, identity.get_user(s, "emma"), PW, actor=identity.system_user(s), policy=Policy()
        )
    with engine.reader() as s:
        st = enablement.status(s, identity.get_user(s, "emma"))
        assert not st.can_sign and st.older_acceptance.startswith("version 1 sha256 ")
    enablement.accept_policy(engine, "emma", password=PW, code=None, version="2")
    with engine.reader() as s:
        assert enablement.status(s, identity.get_user(s, "emma")).can_sign


def test_an_enablement_row_forged_with_sql_is_not_honoured(engine, org):
    """R-P11-100b-1 R-P11-10c-1: a row inserted or edited outside the application fails its
    seal: it does not enable signing, and verify-audit names it."""
    with engine.unit() as s:
        rita_id = identity.get_user(s, "rita").id
        s.execute(
            text(
                "INSERT INTO signing_enablements (user_id, kind, detail, recorded_by_id,"
                " recorded_at, seal) VALUES (:u, 'identity_verified', 'forged', :u, "
                ":at, 'x')"
            ),
            {"u": rita_id, "at": "2026-03-02 09:00:00+00:00"},
        )
        s.execute(
            text(
                "INSERT INTO signing_enablements (user_id, kind, detail, recorded_by_id,"
                " recorded_at, seal) VALUES (:u, 'policy_accepted', :d, :u, :at, 'x')"
            ),
            {"u": rita_id, "d": enablement.current_policy().detail, "at": "2026-03-02 09:00:00+00:00"},
        )
    _, cancel = cancel_as(engine, "rita")
    with pytest.raises(SigningNotEnabled):
        cancel()
    with engine.reader() as s:
        problems = integrity.verify(s, engine.signing_key).problems
    assert any(
        "signing enablement #" in p.message and "does not match its seal" in p.message for p in problems
    )


def test_the_census_counts_people_who_can_sign(engine, org):
    """R-P11-100b-1: the dashboard's count: enabled active people among people with a
    password (ada, ben, emma from the factory have none: not counted as people)."""
    with engine.reader() as s:
        can, people = enablement.signing_census(s)
    assert (can, people) == (0, 1)  # rita: a person, not yet enabled
    enablement.record_identity_verified(engine, "rita", actor="ada", method="HR file", reason="x")
    enablement.accept_policy(engine, "rita", password=PW, code=None, version="1")
    with engine.reader() as s:
        assert enablement.signing_census(s) == (1, 1)
    with engine.unit() as s:
        s.execute(update(User).where(User.username == "rita").values(active=False))
    with engine.reader() as s:
        assert enablement.signing_census(s) == (0, 0)
    with engine.reader() as s:
        assert s.execute(select(func.count()).select_from(SigningEnablement)).scalar_one() > 0
