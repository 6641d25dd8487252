"""User administration commands (workflow.identity.admin), the one home of the rules the CLI
and the admin pages share: an administrator cannot deactivate themselves, a revoked role must
be held, a grant expires at the end of its day, a new account's password is temporary."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from workflow.db.models import AuditEvent, RoleGrant
from workflow.errors import ValidationFailed, WorkflowError
from workflow.identity import admin, passwords, sessions
from workflow.identity import users as identity
from workflow.identity.policy import Policy

POLICY = Policy(min_length=12, history=5, max_age_days=90, lockout_threshold=5,
                     idle_minutes=15, session_hours=12, totp_required_roles=())


def deactivations(engine) -> int:
    with engine.reader() as s:
        return len(s.execute(select(AuditEvent).where(AuditEvent.action == "user_deactivated")
                             ).scalars().all())


def test_an_administrator_cannot_deactivate_themselves(engine, make_user):
    """R-P11-10d-1 R-A11-12-1: refused whatever the case of the name; nothing changes."""
    make_user("ada", "admin")
    before = deactivations(engine)
    for name in ("ada", "ADA"):
        with pytest.raises(WorkflowError, match="cannot deactivate your own account"):
            admin.deactivate_user(engine, name, actor="ada", reason="tidy up")
    with engine.reader() as s:
        assert identity.get_user(s, "ada").active
    assert deactivations(engine) == before


def test_another_administrator_deactivates_with_a_reason(engine, make_user):
    """R-P11-10d-1: deactivation by another administrator is audited with its reason."""
    make_user("ada", "admin")
    make_user("emma", "employee")
    admin.deactivate_user(engine, "emma", actor="ada", reason="left the company")
    with engine.reader() as s:
        assert not identity.get_user(s, "emma", active=False).active
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "user_deactivated")
                       ).scalars().all()[-1]
        assert ev.actor_id == identity.get_user(s, "ada").id
        assert ev.reason == "left the company"


def test_created_user_has_a_temporary_password_and_roles(engine, make_user):
    """R-P11-200-4: the generated password must be changed at first login."""
    make_user("ada", "admin")
    created = admin.create_user(engine, " Zoe ", "Zoe Analyst", actor="ada", reason="hire",
                                policy=POLICY, roles=("capa_owner", "employee"))
    assert created.username == "zoe" and created.password.startswith("Tmp-")
    assert sessions.check_login_password(engine, "zoe", created.password, POLICY
                                     ).must_change_password
    # employee signs (training): a privileged role, awaiting a second administrator (R-IAM-1)
    assert created.pending == ("employee",)
    assert [a.roles for a in admin.list_accounts(engine) if a.username == "zoe"] == [
        ("capa_owner",)]


def test_a_time_zone_not_in_the_tz_database_is_refused(engine, make_user, monkeypatch):
    """R-OPS-10: "Europe/Pari" is refused with the nearest names and creates nobody; without a
    zone the account gets the installation's (QMS_TIMEZONE)."""
    make_user("ada", "admin")
    with pytest.raises(ValidationFailed) as caught:
        admin.create_user(engine, "zoe", "Zoe Analyst", actor="ada", reason="hire",
                          policy=POLICY, timezone="Europe/Pari")
    assert "did you mean Europe/Paris" in caught.value.errors["timezone"]
    with engine.reader() as s:
        assert identity.find_user(s, "zoe") is None
    monkeypatch.setenv("QMS_TIMEZONE", "America/New_York")
    admin.create_user(engine, "zoe", "Zoe Analyst", actor="ada", reason="hire", policy=POLICY)
    with engine.reader() as s:
        assert identity.get_user(s, "zoe").timezone == "America/New_York"


def test_grant_ends_with_its_day_and_revoke_needs_the_role(engine, make_user):
    """R-P11-10g-1: a grant "until" a day lasts to its end (UTC); revoking a role not held
    is refused."""
    make_user("ada", "admin")
    make_user("emma", "employee")
    with engine.unit() as s:  # a person (an account without a password is a service account)
        passwords.set_password(s, identity.get_user(s, "emma"), "Correct-Horse-Battery-9",
                               actor=identity.system_user(s), policy=POLICY)
    admin.grant_role(engine, "emma", "capa_owner", actor="ada", reason="cover",
                     expires_on=date(2026, 3, 31))
    with engine.reader() as s:
        g = s.execute(select(RoleGrant).where(RoleGrant.role == "capa_owner")).scalar_one()
        assert g.expires_at.replace(tzinfo=UTC) == datetime(2026, 4, 1, tzinfo=UTC)
    admin.revoke_role(engine, "emma", "capa_owner", actor="ada", reason="cover ended")
    with pytest.raises(WorkflowError, match="does not hold the role 'capa_owner'"):
        admin.revoke_role(engine, "emma", "capa_owner", actor="ada", reason="again")
