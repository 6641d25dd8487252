"""Identity, access control and Part 11 electronic signatures (issue 3).

Every rule positive and negative: wrong password, another user's password, replayed TOTP
code, lockout through failed signing, deactivated user, expired password, continuous-session
rules, role at signing, usernames never reused.
"""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from tests.conftest import TEST_KEY
from workflow import clock
from workflow.db.models import ApiToken, AuditEvent, OutboxMessage, Record, Signature, User
from workflow.errors import (
    AccountLocked,
    CredentialsRejected,
    InactiveUser,
    LoginFailed,
    NotAuthorized,
    PasswordExpired,
    PasswordRejected,
    SecondFactorFailed,
    SessionEnded,
    SignatureRejected,
    UsernameTaken,
    WorkflowError,
)
from workflow.identity import lockout, passwords, sessions
from workflow.identity import tokens as api_tokens
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.identity.totp import begin_totp_enrolment, confirm_totp_enrolment, reset_totp
from workflow.signatures.part11 import Part11Verifier, PasswordSignature

PW = "Correct-Horse-Battery-9"
POLICY = Policy(min_length=12, history=5, max_age_days=90, lockout_threshold=5,
                idle_minutes=15, session_hours=12, totp_required_roles=("qa", "admin"))


@pytest.fixture
def p11(engine):
    """The engine with the real Part 11 verifier (no vouched signatures)."""
    engine.verifier = Part11Verifier(TEST_KEY, POLICY)
    return engine


@pytest.fixture
def person(p11, make_user):
    """``person("quinn", "qa")`` -> username, with a password set."""

    def make(username, *roles, password=PW):
        make_user(username, *roles)
        with p11.unit() as s:
            u = identity.get_user(s, username)
            passwords.set_password(s, u, password, actor=identity.system_user(s), policy=POLICY,
                                   reason="test")
            u.must_change_password = False
        return username

    return make


def enrol(engine, username):
    e = begin_totp_enrolment(engine, username, POLICY)
    totp = pyotp.TOTP(e.secret)
    codes = confirm_totp_enrolment(engine, username, totp.at(clock.now()))
    return totp, codes


def login(engine, username, password=PW, totp=None):
    checked = sessions.check_login_password(engine, username, password, POLICY)
    if checked.needs_totp:
        sessions.check_login_totp(engine, checked.challenge, totp.at(clock.now()), POLICY)
    return sessions.start_session(engine, checked.user_id, mfa=checked.needs_totp)


def capa_at_plan_approval(engine, emp, qa_submitter):
    r = engine.start("capa", emp, {"title": "t", "description": "d"})
    engine.fire(r.number, "assign", qa_submitter, {"owner": "olga"})
    engine.fire(r.number, "submit_root_cause", "olga", {"root_cause_category": "method",
                                                       "root_cause": "rc"})
    engine.fire(r.number, "submit_plan", "olga", {"actions": [{"description": "a"}],
                                                  "effectiveness_criteria": "c"})
    return r.number


@pytest.fixture
def org(person):
    return {"emp": person("emma", "employee"), "qa": person("quinn", "qa", "employee"),
            "qa2": person("quentin", "qa", "employee"), "owner": person("olga", "capa_owner")}


def security_events(engine, action):
    with engine.reader() as s:
        return s.execute(select(AuditEvent).where(AuditEvent.chain == "system",
                                                  AuditEvent.action == action)
                         .order_by(AuditEvent.seq)).scalars().all()


# ------------------------------------------------------------------ passwords


def test_password_is_hashed_with_argon2id(p11, org):
    """R-P11-300b-1: passwords are stored only as argon2id hashes."""
    with p11.reader() as s:
        h = identity.get_user(s, "quinn").password_hash
    assert h.startswith("$argon2id$") and PW not in h


@pytest.mark.parametrize("pw, problem", [
    ("Short-1", "at least 12 characters"),
    ("my-name-is-quinn-ok", "must not contain your username"),
    ("password1234", "most commonly used"),
])
def test_password_policy_refuses(p11, org, pw, problem):
    """R-P11-300b-1: the policy refuses short, username-containing and common passwords."""
    with pytest.raises(PasswordRejected, match=problem):
        passwords.change_password(p11, "quinn", PW, pw, POLICY)


def test_last_five_passwords_cannot_be_reused(p11, org):
    """R-P11-300b-1: no reuse of the last 5 passwords."""
    pws = [f"Another-Secret-{i}-xyz" for i in range(5)]
    prev = PW
    for p in pws:
        passwords.change_password(p11, "quinn", prev, p, POLICY)
        prev = p
    with pytest.raises(PasswordRejected, match="last 5"):
        passwords.change_password(p11, "quinn", prev, pws[1], POLICY)
    passwords.change_password(p11, "quinn", prev, PW, POLICY)  # six changes ago: allowed again


def test_expired_password_forces_change_and_blocks_signing(p11, org):
    """R-P11-300b-1: an expired password forces a change before login completes or signing."""
    clock.advance(timedelta(days=91))
    checked = sessions.check_login_password(p11, "emma", PW, POLICY)
    assert checked.must_change_password
    number = capa_at_plan_approval(p11, "emma", "quinn")
    with pytest.raises(PasswordExpired):
        p11.fire(number, "approve_plan", "quentin",
                 signature=PasswordSignature("quentin", PW))


def test_admin_reset_password_must_be_changed(p11, org):
    """R-P11-200-4: an administrator's password is temporary; the user must change it."""
    with p11.unit() as s:
        passwords.set_password(s, identity.get_user(s, "emma"), "Temporary-Pass-77",
                               actor=identity.system_user(s), policy=POLICY, reason="forgotten",
                               temporary=True)
    assert sessions.check_login_password(p11, "emma", "Temporary-Pass-77", POLICY).must_change_password
    assert security_events(p11, "password_reset")[-1].reason == "forgotten"


# ------------------------------------------------------------------ login and lockout


def test_login_failures_lock_the_account_and_notify_security(p11, org):
    """R-P11-300d-1: 5 consecutive failures lock the account; security is notified."""
    for _ in range(4):
        with pytest.raises(LoginFailed):
            sessions.check_login_password(p11, "emma", "wrong-password!!", POLICY)
    with pytest.raises(LoginFailed):  # the one message: a stranger is not told it locked
        sessions.check_login_password(p11, "emma", "wrong-password!!", POLICY)
    with pytest.raises(LoginFailed):  # even the right password now
        sessions.check_login_password(p11, "emma", PW, POLICY)
    assert len(security_events(p11, "login_failed")) == 6
    with p11.reader() as s:
        assert lockout.is_locked(identity.get_user(s, "emma"))
    assert len(security_events(p11, "account_locked")) == 1
    with p11.reader() as s:
        msg = s.execute(select(OutboxMessage).where(OutboxMessage.kind == "account_locked")
                        ).scalar_one()
        assert msg.recipient_role == "admin" and msg.subject == "account emma locked"
    lockout.unlock(p11, "emma", actor="system", reason="verified by phone")
    assert sessions.check_login_password(p11, "emma", PW, POLICY).username == "emma"
    assert security_events(p11, "account_unlocked")[-1].reason == "verified by phone"


def test_unknown_user_and_wrong_password_give_the_same_message(p11, org):
    """R-P11-10d-1: login does not reveal which usernames exist."""
    with pytest.raises(LoginFailed) as a:
        sessions.check_login_password(p11, "nobody", PW, POLICY)
    with pytest.raises(LoginFailed) as b:
        sessions.check_login_password(p11, "emma", "not-the-password", POLICY)
    assert str(a.value) == str(b.value)


def test_deactivated_user_can_neither_log_in_nor_sign(p11, org):
    """R-P11-10d-1 R-P11-10e-6: deactivated users cannot log in or sign; past signatures stay."""
    number = capa_at_plan_approval(p11, "emma", "quinn")
    p11.fire(number, "approve_plan", "quentin",
             signature=PasswordSignature("quentin", PW, totp=None) if False else
             _enrolled_signature(p11, "quentin"))
    with p11.unit() as s:
        identity.deactivate_user(s, identity.get_user(s, "quentin"),
                                 actor=identity.system_user(s), reason="left the company")
    with pytest.raises(LoginFailed):
        sessions.check_login_password(p11, "quentin", PW, POLICY)
    with pytest.raises((InactiveUser, NotAuthorized)):
        p11.fire(number, "cancel", "quentin", reason="x",
                 signature=PasswordSignature("quentin", PW))
    with p11.reader() as s:
        sig = s.execute(select(Signature).where(Signature.signer_username == "quentin")).scalar_one()
        assert sig.signer_name == "Quentin Tester"


def _enrolled_signature(engine, username):
    totp, _ = enrol(engine, username)
    clock.advance(timedelta(seconds=31))
    return PasswordSignature(username, PW, totp=totp.at(clock.now()))


def test_username_is_never_reused(p11, org):
    """R-P11-100a-1 R-P11-300a-1: a deactivated username (any case) cannot be taken again."""
    with p11.unit() as s:
        identity.deactivate_user(s, identity.get_user(s, "emma"),
                                 actor=identity.system_user(s), reason="left")
    with pytest.raises(UsernameTaken), p11.unit() as s:
        identity.create_user(s, "EMMA", "Another Emma", actor=identity.system_user(s))


# ------------------------------------------------------------------ TOTP


def test_totp_code_is_accepted_once(p11, org):
    """R-P11-300e-1: enrolment needs a confirming code; a code cannot be replayed."""
    totp, codes = enrol(p11, "quinn")
    assert len(codes) == 10
    clock.advance(timedelta(seconds=60))
    checked = sessions.check_login_password(p11, "quinn", PW, POLICY)
    assert checked.needs_totp
    code = totp.at(clock.now())
    assert sessions.check_login_totp(p11, checked.challenge, code, POLICY).second_factor == "totp"
    again = sessions.check_login_password(p11, "quinn", PW, POLICY)  # a new login step
    with pytest.raises(SecondFactorFailed, match="already used"):
        sessions.check_login_totp(p11, again.challenge, code, POLICY)


def test_recovery_code_works_once(p11, org):
    _, codes = enrol(p11, "quinn")
    step = sessions.check_login_password(p11, "quinn", PW, POLICY).challenge
    assert sessions.check_login_totp(p11, step, codes[0], POLICY).second_factor == "recovery"
    step = sessions.check_login_password(p11, "quinn", PW, POLICY).challenge
    with pytest.raises(SecondFactorFailed):
        sessions.check_login_totp(p11, step, codes[0], POLICY)


def test_enrolment_refuses_a_wrong_code(p11, org):
    begin_totp_enrolment(p11, "quinn", POLICY)
    with pytest.raises(SecondFactorFailed):
        confirm_totp_enrolment(p11, "quinn", "000000")
    with p11.reader() as s:
        assert identity.get_user(s, "quinn").totp_enabled_at is None


def test_qa_must_enrol_before_signing(p11, org):
    """R-P11-200-1: policy requires TOTP for QA; unenrolled QA cannot sign."""
    assert sessions.check_login_password(p11, "quinn", PW, POLICY).needs_enrolment
    number = capa_at_plan_approval(p11, "emma", "quinn")
    with pytest.raises(SignatureRejected, match="enrol"):
        p11.fire(number, "approve_plan", "quentin",
                 signature=PasswordSignature("quentin", PW))


def test_reset_totp_revokes_the_authenticator(p11, org):
    """R-P11-300c-1: a reset authenticator no longer works; audited."""
    totp, _ = enrol(p11, "quinn")
    reset_totp(p11, "quinn", actor="system", reason="phone lost")
    clock.advance(timedelta(seconds=60))
    checked = sessions.check_login_password(p11, "quinn", PW, POLICY)
    assert not checked.needs_totp and checked.challenge is None  # no code step any more
    assert security_events(p11, "totp_reset")[-1].reason == "phone lost"


# ------------------------------------------------------------------ signatures


def test_signature_refused_with_wrong_password_and_nothing_changes(p11, org):
    """R-P11-200-1 R-P11-300d-2: wrong password -> refused, nothing signed, failure counted."""
    number = capa_at_plan_approval(p11, "emma", "quinn")
    totp, _ = enrol(p11, "quentin")
    clock.advance(timedelta(seconds=31))
    before = p11.get(number)
    with pytest.raises(CredentialsRejected, match="password is wrong"):
        p11.fire(number, "approve_plan", "quentin",
                 signature=PasswordSignature("quentin", "not-my-password", totp.at(clock.now())))
    after = p11.get(number)
    assert (after.state, after.version) == (before.state, before.version)
    with p11.reader() as s:
        assert s.execute(select(Signature)).first() is None
        assert identity.get_user(s, "quentin").failed_attempts == 1
    assert security_events(p11, "signature_failed")[-1].changes["detail"] == "wrong password"


def test_signing_with_another_users_password_is_refused(p11, org):
    """R-P11-200-3: the signer must be the logged-in user; another's credentials fail."""
    number = capa_at_plan_approval(p11, "emma", "quinn")
    with pytest.raises(CredentialsRejected, match="only sign as yourself"):
        p11.fire(number, "approve_plan", "quentin",
                 signature=PasswordSignature("quinn", PW))
    person_pw = "Own-Pass-For-Q-77"
    with p11.unit() as s:
        passwords.set_password(s, identity.get_user(s, "quentin"), person_pw,
                               actor=identity.system_user(s), policy=POLICY)
    with pytest.raises(CredentialsRejected):  # quinn's password typed for quentin
        p11.fire(number, "approve_plan", "quentin", signature=PasswordSignature("quentin", PW))


def test_failed_signings_lock_the_account(p11, org):
    """R-P11-300d-1 R-P11-300d-2: five failed signatures lock the signer out."""
    number = capa_at_plan_approval(p11, "emma", "quinn")
    for _ in range(4):
        with pytest.raises(CredentialsRejected):
            p11.fire(number, "approve_plan", "quentin",
                     signature=PasswordSignature("quentin", "guess-guess-guess"))
    with pytest.raises(AccountLocked):
        p11.fire(number, "approve_plan", "quentin",
                 signature=PasswordSignature("quentin", "guess-guess-guess"))
    with pytest.raises(LoginFailed):
        sessions.check_login_password(p11, "quentin", PW, POLICY)
    assert len(security_events(p11, "signature_failed")) == 5


def test_continuous_session_first_signing_needs_all_components(p11, org):
    """R-P11-200-1 R-P11-200-2 R-SEC-29: first signing in a session needs password + TOTP; later ones
    the password; after the idle timeout everything again."""
    totp, _ = enrol(p11, "quentin")
    clock.advance(timedelta(seconds=31))
    token = login(p11, "quentin", totp=totp)
    n1 = capa_at_plan_approval(p11, "emma", "quinn")
    n2 = capa_at_plan_approval(p11, "emma", "quinn")
    n3 = capa_at_plan_approval(p11, "emma", "quinn")
    clock.advance(timedelta(seconds=31))
    # an empty code field is asked for and not counted (R-SEC-29)
    with pytest.raises(SignatureRejected, match="Enter the authentication code"):
        p11.fire(n1, "approve_plan", "quentin",
                 signature=PasswordSignature("quentin", PW, session_token=token))
    clock.advance(timedelta(seconds=31))
    r = p11.fire(n1, "approve_plan", "quentin", signature=PasswordSignature(
        "quentin", PW, totp=totp.at(clock.now()), session_token=token))
    assert r.state == "implementation"
    r = p11.fire(n2, "approve_plan", "quentin",
                 signature=PasswordSignature("quentin", PW, session_token=token))
    assert r.state == "implementation"
    clock.advance(timedelta(minutes=16))
    with pytest.raises(SignatureRejected, match="timed out"):
        p11.fire(n3, "approve_plan", "quentin",
                 signature=PasswordSignature("quentin", PW, session_token=token))
    with p11.reader() as s:
        methods = s.execute(select(Signature.method).order_by(Signature.id)).scalars().all()
    assert methods == ["password+totp", "password (session)"]


def test_without_a_session_every_signing_needs_every_component(p11, org):
    """R-P11-200-1: signings outside a continuous session (API) need all components each time."""
    totp, _ = enrol(p11, "quentin")
    n1 = capa_at_plan_approval(p11, "emma", "quinn")
    clock.advance(timedelta(seconds=31))
    with pytest.raises(SignatureRejected, match="authentication code"):
        p11.fire(n1, "approve_plan", "quentin", signature=PasswordSignature("quentin", PW))
    p11.fire(n1, "approve_plan", "quentin",
             signature=PasswordSignature("quentin", PW, totp=totp.at(clock.now())))


def test_signer_must_hold_the_role_at_signing(p11, org):
    """R-P11-10g-3: authority is the role held at the moment of signing."""
    number = capa_at_plan_approval(p11, "emma", "quinn")
    sig = _enrolled_signature(p11, "quentin")
    with p11.unit() as s:
        identity.revoke_role(s, identity.get_user(s, "quentin"), "qa",
                             actor=identity.system_user(s), reason="moved to production")
    with pytest.raises(NotAuthorized):
        p11.fire(number, "approve_plan", "quentin", signature=sig)


def test_logout_ends_the_session_server_side(p11, org):
    """R-P11-200-2: logout ends the continuous session."""
    token = login(p11, "emma")
    assert sessions.touch_session(p11, token, POLICY).username == "emma"
    sessions.end_session(p11, token)
    with pytest.raises(SessionEnded):
        sessions.touch_session(p11, token, POLICY)


def test_session_lifetime_and_idle_timeout(p11, org):
    token = login(p11, "emma")
    for _ in range(13):  # active every 14 minutes, but only for 12 hours in all
        clock.advance(timedelta(minutes=14))
        sessions.touch_session(p11, token, POLICY)
    clock.advance(timedelta(hours=10))
    with pytest.raises(SessionEnded, match="timed out"):
        sessions.touch_session(p11, token, POLICY)


def test_roles_and_grants_are_audited_with_reason_and_expiry(p11, org):
    """R-A11-12-1: grants record who, when, why, expiry; revocation audited."""
    with p11.unit() as s:
        u = identity.get_user(s, "emma")
        identity.grant_role(s, u, "qa", actor=identity.system_user(s), reason="cover",
                            expires_at=clock.now() + timedelta(days=7))
    with p11.reader() as s:
        assert "qa" in identity.roles_of(s, identity.get_user(s, "emma"))
    clock.advance(timedelta(days=8))
    with p11.reader() as s:
        assert "qa" not in identity.roles_of(s, identity.get_user(s, "emma"))
    ev = security_events(p11, "role_granted")[-1]
    assert ev.reason == "cover" and ev.changes["role"] == [None, "qa"]


def test_signatures_survive_in_the_trail_with_printed_names(p11, org):
    """R-P11-50-1: manifestation stored: printed name, time, meaning."""
    number = capa_at_plan_approval(p11, "emma", "quinn")
    p11.fire(number, "approve_plan", "quentin", signature=_enrolled_signature(p11, "quentin"))
    with p11.reader() as s:
        rec = s.execute(select(Record).where(Record.number == number)).scalar_one()
        sig = s.execute(select(Signature).where(Signature.record_id == rec.id)).scalar_one()
        assert (sig.signer_name, sig.meaning, sig.signed_at) == (
            "Quentin Tester", "Approved", clock.now())
        assert sig.method == "password+totp"


def test_create_user_refuses_bad_input(p11):
    with pytest.raises(WorkflowError, match="not a valid username"), p11.unit() as s:
        identity.create_user(s, "x", "X", actor=identity.system_user(s))
    with pytest.raises(WorkflowError, match="printed full name"), p11.unit() as s:
        identity.create_user(s, "valid.name", "  ", actor=identity.system_user(s))
    with p11.reader() as s:
        assert s.execute(select(User).where(User.username == "valid.name")).first() is None


# ------------------------------------------------------------------ API tokens


def test_owner_only_revoke_refuses_another_users_token_and_changes_nothing(p11, org, person):
    """R-P11-10g-1: revoking through the owner's path refuses someone else's token - even for
    an administrator - and leaves the token, and the audit trail, untouched."""
    person("ada", "admin")
    with p11.unit() as s:
        quinn = identity.get_user(s, "quinn")
        tid = api_tokens.create_token(s, quinn, actor=quinn, name="q", scopes="read").info.id
    for intruder in ("emma", "ada"):
        with pytest.raises(NotAuthorized, match="no such token of yours"), p11.unit() as s:
            api_tokens.revoke_own_token(s, tid, actor=identity.get_user(s, intruder))
    with p11.reader() as s:
        row = s.get(ApiToken, tid)
        assert row.revoked_at is None and row.revoked_by_id is None
    assert security_events(p11, "api_token_revoked") == []
    with p11.unit() as s:  # its owner may
        api_tokens.revoke_own_token(s, str(tid), actor=identity.get_user(s, "quinn"))
    with p11.reader() as s:
        assert s.get(ApiToken, tid).revoked_at is not None
    assert security_events(p11, "api_token_revoked")[-1].reason == "revoked by its owner"
