"""One-time credentials and the failure counter under parallel requests (issue 14 item 3):
on PostgreSQL, 40 wrong logins fired at once used to check 20 passwords instead of 5, one
TOTP code was accepted twice and one recovery code three times. Each test here releases its
threads together (``threading.Barrier``) on real commits and asserts exactly-once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from tests.integration.test_concurrency import race
from workflow import clock
from workflow.db.models import AuditEvent, User
from workflow.errors import LoginFailed, SecondFactorFailed
from workflow.identity import passwords, sessions
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.identity.totp import begin_totp_enrolment, confirm_totp_enrolment

pytestmark = pytest.mark.committed

PW = "Correct-Horse-Battery-9"
#: login throttling off: these tests are about the lockout counter and one-time codes
#: (tests/web/test_throttling.py is about throttling)
POLICY = Policy(totp_required_roles=(), lockout_threshold=5, login_rate_per_ip=0, login_rate_per_account=0)
#: for the code races: refused replays count toward lockout; a high threshold keeps the
#: account open so that every refusal shows its own reason
LENIENT = replace(POLICY, lockout_threshold=50)
PARALLEL = 40


@pytest.fixture
def quinn(committed_engine) -> pyotp.TOTP:
    """quinn, with a password and an enrolled authenticator, committed."""
    with committed_engine.unit() as s:
        system = identity.system_user(s)
        u = identity.create_user(s, "quinn", "Quinn QA", actor=system, reason="test")
        passwords.set_password(s, u, PW, actor=system, policy=POLICY)
    e = begin_totp_enrolment(committed_engine, "quinn", POLICY)
    confirm_totp_enrolment(committed_engine, "quinn", pyotp.TOTP(e.secret).at(clock.now()))
    clock.advance(timedelta(seconds=60))
    return pyotp.TOTP(e.secret)


def events(engine, action: str) -> list[AuditEvent]:
    with engine.reader() as s:
        return list(
            s.execute(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars()
        )


def test_parallel_wrong_passwords_check_exactly_the_lockout_threshold(committed_engine, quinn):
    """R-SEC-25 R-P11-300d-1: 40 wrong passwords for one account at the same moment: exactly
    5 (the threshold) are checked against the hash, the account locks once, the other 35
    are refused as locked without a password check."""
    results = race(
        PARALLEL,
        lambda i: sessions.check_login_password(committed_engine, "quinn", f"wrong-password-{i}", POLICY),
    )
    assert all(kind == "error" for kind, _ in results)
    assert all(isinstance(exc, LoginFailed) for _, exc in results)  # one message for all
    failed = events(committed_engine, "login_failed")
    details = Counter(e.changes["detail"] for e in failed)
    assert details["wrong password"] == POLICY.lockout_threshold
    assert details["account locked"] == PARALLEL - POLICY.lockout_threshold
    assert len(events(committed_engine, "account_locked")) == 1
    # the counter saw every attempt: no lost update
    assert sorted(e.changes["failed_attempts"] for e in failed) == list(range(1, PARALLEL + 1))
    with committed_engine.reader() as s:
        assert (
            s.execute(select(User.failed_attempts).where(User.username == "quinn")).scalar_one() == PARALLEL
        )


def test_one_totp_code_in_parallel_logins_is_accepted_once(committed_engine, quinn):
    """R-SEC-25 R-SEC-3: ten login steps present the same current code at once: one is
    accepted, nine are refused as already used."""
    steps = [
        sessions.check_login_password(committed_engine, "quinn", PW, POLICY).challenge for _ in range(10)
    ]
    code = quinn.at(clock.now())
    results = race(10, lambda i: sessions.check_login_totp(committed_engine, steps[i], code, LENIENT))
    accepted = [r for kind, r in results if kind == "ok"]
    refused = [r for kind, r in results if kind == "error"]
    assert len(accepted) == 1 and accepted[0].second_factor == "totp"
    assert len(refused) == 9
    assert all(isinstance(e, SecondFactorFailed) and "already used" in e.message for e in refused)


def test_one_recovery_code_in_parallel_logins_is_accepted_once(committed_engine, quinn):
    """R-SEC-25 R-SEC-3: ten login steps present the same recovery code at once: it is
    accepted once."""
    with committed_engine.unit() as s:  # fresh recovery codes we know
        identity.get_user(s, "quinn").totp_enabled_at = None
    e = begin_totp_enrolment(committed_engine, "quinn", POLICY)
    codes = confirm_totp_enrolment(committed_engine, "quinn", pyotp.TOTP(e.secret).at(clock.now()))
    clock.advance(timedelta(seconds=60))
    steps = [
        sessions.check_login_password(committed_engine, "quinn", PW, POLICY).challenge for _ in range(10)
    ]
    results = race(10, lambda i: sessions.check_login_totp(committed_engine, steps[i], codes[0], LENIENT))
    accepted = [r for kind, r in results if kind == "ok"]
    assert len(accepted) == 1 and accepted[0].second_factor == "recovery"
    assert all(isinstance(r, SecondFactorFailed) for kind, r in results if kind == "error")
    assert len(events(committed_engine, "recovery_code_used")) == 1
