"""Segregation of administration (issue 14, item 5): no self-grants, only declared roles,
incompatible roles refused, service accounts limited to the roles for systems, privileged roles
granted only with a second administrator's approval, and the access review (privileged and
dormant accounts)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from workflow import clock
from workflow.audit import integrity
from workflow.db.models import AuditEvent, GrantRequest, RoleGrant
from workflow.errors import GrantRefused, NotAuthorized
from workflow.identity import admin, grants, passwords, sessions
from workflow.identity import users as identity
from workflow.identity.policy import Policy
from workflow.identity.users import SYSTEM_USERNAME


def roles(engine, username: str) -> set[str]:
    with engine.reader() as s:
        return identity.roles_of(s, identity.get_user(s, username))


def written(engine) -> tuple[int, int, int]:
    """Grant rows, grant requests and audit events: what a refused grant must not change."""
    with engine.reader() as s:
        return tuple(
            s.execute(select(func.count()).select_from(m)).scalar_one()
            for m in (RoleGrant, GrantRequest, AuditEvent)
        )


def events(engine, action: str) -> list[AuditEvent]:
    with engine.reader() as s:
        return list(
            s.execute(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars()
        )


@pytest.fixture
def person(engine, make_user):
    """``person("ada", "admin")``: a user with a password (an account without one is a
    service account)."""

    def make(username: str, *roles: str, full_name: str | None = None) -> str:
        make_user(username, *roles, full_name=full_name)
        with engine.unit() as s:
            u = identity.get_user(s, username)
            passwords.set_password(
                s, u, "Correct-Horse-Battery-9", actor=identity.system_user(s), policy=Policy()
            )
        return username

    return make


@pytest.fixture
def admins(person):
    person("ada", "admin", full_name="Ada Admin")
    person("ben", "admin", full_name="Ben Admin")
    person("emma", "employee", full_name="Emma Employee")


@pytest.mark.parametrize(
    "who, role, message",
    [
        ("ada", "qa", "You cannot grant a role to your own account (qa to ada); another administrator must."),
        (
            "emma",
            "superuser",
            "'superuser' is not a role any published workflow definition or the "
            "settings declare, so it cannot be granted. Declared roles: ",
        ),
        ("emma", "Bad Role", "'Bad Role' is not a valid role name."),
        (
            "ben",
            "qa",
            "ben holds (or awaits) admin, which may not be combined with qa (QMS_INCOMPATIBLE_ROLES)",
        ),
    ],
)
def test_refused_grants_say_why_and_change_nothing(engine, admins, who, role, message):
    """R-IAM-1 R-IAM-2 R-IAM-3 R-P11-10g-1: a self-grant, an undeclared or malformed role and
    an incompatible pair (admin with qa by default) are refused with a clear message; no
    grant, request or audit event is written."""
    before = written(engine)
    with pytest.raises(GrantRefused) as exc:
        admin.grant_role(engine, who, role, actor="ada", reason="test")
    assert str(exc.value).startswith(message)
    assert written(engine) == before and role not in roles(engine, who)


def test_a_privileged_role_needs_a_second_administrator(engine, admins):
    """R-IAM-1 R-A11-12-1 R-P11-10g-1: ada's grant of qa (a signing role) to emma is a pending
    request, not a grant; ada cannot approve her own request, emma cannot approve at all, ben
    approves: emma holds qa, and the request, approval and grant are audited by their authors;
    verify-audit still passes (the grant is sealed)."""
    pending = admin.grant_role(engine, "emma", "qa", actor="ada", reason="Moves to QA")
    assert isinstance(pending, int) and "qa" not in roles(engine, "emma")
    with pytest.raises(GrantRefused, match="You requested grant #.*a second administrator must"):
        admin.approve_grant(engine, pending, actor="ada", reason="ok")
    with pytest.raises(NotAuthorized, match="Only administrators decide grant requests"):
        admin.approve_grant(engine, pending, actor="emma", reason="ok")
    with pytest.raises(GrantRefused, match="already awaits a second administrator"):
        admin.grant_role(engine, "emma", "qa", actor="ben", reason="again")
    assert (
        admin.approve_grant(engine, pending, actor="ben", reason="Checked with the QA head") == "qa to emma"
    )
    assert "qa" in roles(engine, "emma")
    (req,) = events(engine, "role_grant_requested")
    (ok,) = events(engine, "role_grant_approved")
    granted = events(engine, "role_granted")[-1]
    assert (req.actor_name, req.changes["role"], req.reason) == ("Ada Admin", "qa", "Moves to QA")
    assert (ok.actor_name, ok.changes["requested_by"]) == ("Ben Admin", "ada")
    assert granted.actor_name == "Ben Admin" and "approved by ben" in granted.reason
    with pytest.raises(GrantRefused, match="was already approved"):
        admin.reject_grant(engine, pending, actor="ben", reason="too late")
    with engine.reader() as s:
        assert integrity.verify(s, engine.signing_key).ok


def test_a_rejected_request_grants_nothing_and_nobody_decides_a_grant_to_themselves(engine, admins, person):
    """R-IAM-1: a second administrator rejects (audited); a request for an administrator's own
    account is decided by another one."""
    pending = admin.grant_role(engine, "emma", "trainer", actor="ada", reason="Trains now")
    admin.reject_grant(engine, pending, actor="ben", reason="Not qualified yet")
    assert "trainer" not in roles(engine, "emma")
    assert events(engine, "role_grant_rejected")[-1].reason == "Not qualified yet"
    person("cid", "admin")
    mine = admin.grant_role(engine, "ben", "isms", actor="ada", reason="Security officer")
    with pytest.raises(GrantRefused, match="is for your own account"):
        admin.approve_grant(engine, mine, actor="ben", reason="me")
    admin.approve_grant(engine, mine, actor="cid", reason="Agreed by the board")
    assert "isms" in roles(engine, "ben")


def test_the_command_line_bootstraps_the_first_administrator_then_asks_for_a_second(engine, person):
    """R-IAM-1: with no active administrator, `qms users` (the system account) grants admin
    directly, saying so; once one exists, its privileged grants wait for an administrator."""
    person("ada")
    person("emma", "employee")
    assert admin.grant_role(engine, "ada", "admin", actor=SYSTEM_USERNAME, reason="setup") is None
    assert "admin" in roles(engine, "ada")
    assert "no active administrator exists" in events(engine, "role_granted")[-1].reason
    pending = admin.grant_role(engine, "emma", "qa", actor=SYSTEM_USERNAME, reason="QA")
    assert pending is not None and "qa" not in roles(engine, "emma")
    admin.approve_grant(engine, pending, actor="ada", reason="ok")
    assert "qa" in roles(engine, "emma")
    # a role that does not sign is granted at once
    assert admin.grant_role(engine, "emma", "capa_owner", actor="ada", reason="CAPAs") is None


def test_service_accounts_hold_only_the_roles_for_systems(engine, admins, monkeypatch):
    """R-IAM-4 R-P11-10g-1: a service account cannot be created with, or given, qa; the roles
    for systems come from QMS_SERVICE_ACCOUNT_ROLES."""
    with pytest.raises(
        GrantRefused,
        match=r"Service accounts may hold only: employee, "
        r"training_coordinator .*qa cannot be given to lims",
    ):
        admin.create_service_account(
            engine, "lims", "LIMS", roles=("employee", "qa"), actor="ada", reason="LIMS"
        )
    admin.create_service_account(engine, "lims", "LIMS", roles=("employee",), actor="ada", reason="LIMS")
    with pytest.raises(GrantRefused, match="lims is a service account"):
        admin.grant_role(engine, "lims", "qa", actor="ada", reason="shortcut")
    monkeypatch.setenv("QMS_SERVICE_ACCOUNT_ROLES", "employee,capa_owner")
    assert admin.grant_role(engine, "lims", "capa_owner", actor="ada", reason="CAPA feed") is None


def test_incompatible_pairs_come_from_the_settings_and_count_pending_requests(engine, admins, monkeypatch):
    """R-IAM-3: QMS_INCOMPATIBLE_ROLES names the pairs; a role awaiting approval counts."""
    monkeypatch.setenv("QMS_INCOMPATIBLE_ROLES", "qa:capa_owner")
    admin.grant_role(engine, "emma", "qa", actor="ada", reason="QA")  # pending
    with pytest.raises(
        GrantRefused, match="emma holds \\(or awaits\\) qa, which may not be combined with capa_owner"
    ):
        admin.grant_role(engine, "emma", "capa_owner", actor="ada", reason="CAPA")
    # admin + qa is allowed once the setting no longer lists it
    assert admin.grant_role(engine, "ben", "capa_owner", actor="ada", reason="x") is None


def test_the_access_review_lists_privileged_and_dormant_accounts_and_old_violations(engine, admins, person):
    """R-IAM-5 R-ISO-3 R-A11-12-1: the privileged accounts (with their last login), a legacy
    admin+qa holder and a service account holding qa flagged as problems, pending requests,
    and the accounts without a login in QMS_DORMANT_DAYS (90)."""
    person("olga", "admin", "qa")  # granted before the rules (engine-internal path)
    with engine.unit() as s:
        system = identity.system_user(s)
        from workflow.identity import tokens

        tokens.create_service_account(s, "robot", "Robot", roles=("qa",), actor=system, reason="legacy")
    pending = admin.grant_role(engine, "emma", "qa", actor="ada", reason="QA")
    clock.advance(timedelta(days=100))
    with engine.reader() as s:
        ada_id = identity.get_user(s, "ada").id
    sessions.start_session(engine, ada_id, mfa=True)
    review = admin.access_review(engine)
    by_name = {a.username: a for a in review.privileged}
    assert {"ada", "ben", "emma", "olga", "robot"} <= set(by_name)
    assert by_name["olga"].problems == ("holds admin with qa (incompatible)",)
    assert "service account holding qa" in by_name["robot"].problems
    assert by_name["ada"].last_login is not None and not by_name["ada"].dormant
    assert [p.id for p in review.pending] == [pending]
    assert {a.username for a in review.dormant} >= {"ben", "emma", "olga"}
    assert "ada" not in {a.username for a in review.dormant}
    assert "robot" not in {a.username for a in review.dormant}  # systems do not log in
    assert grants.ADMIN_ROLE in review.catalogue.privileged
    assert "qa" in review.catalogue.signing and "capa_owner" not in review.catalogue.privileged
