"""User access review walked end to end: the system owner attests every grant (never their
own), the QMS's own grants marked revoke are revoked on entering "revocation" (audited on the
system chain), the access administrator confirms, and ISMS or QA signs off."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.factories import sign
from workflow import clock
from workflow.audit import integrity
from workflow.audit import trail as audit
from workflow.db.models import AuditEvent, Record, RoleGrant, Signature, Task, TaskStatus
from workflow.errors import (
    GuardFailed,
    NotAuthorized,
    PopulationFixed,
    ReasonRequired,
    SegregationOfDuties,
)
from workflow.identity import users as identity


@pytest.fixture
def staff(people, make_user):
    return {
        **people,
        "sam": make_user("sam", "system_owner", "employee", full_name="Sam System-Owner"),
        "sonia": make_user("sonia", "system_owner", "employee", full_name="Sonia System-Owner"),
        "adam": make_user("adam", "access_admin", "employee", full_name="Adam Access-Admin"),
        "ivy": make_user("ivy", "isms", "employee", full_name="Ivy ISMS"),
    }


def grants(staff, olga="revoke"):
    return [
        {"user": staff["owner"], "role": "capa_owner", "decision": olga,
         "comment": "Moved to another site on 2026-02-15" if olga == "revoke" else ""},
        {"user": staff["po"], "role": "process_owner", "decision": "keep"},
        {"user": staff["qa"], "role": "qa", "decision": "keep"},
        {"user": staff["sam"], "role": "system_owner", "decision": "keep"},
    ]


def open_review(engine, staff, system="QMS"):
    return engine.start("access_review", staff["ivy"], {
        "title": f"{system} access review 2026-Q1", "system": system, "period": "2026-Q1",
        "scope": "Role grant export of 2026-03-01"})


def roles(engine, username):
    with engine.reader() as s:
        return identity.roles_of(s, identity.get_user(s, username))


def role_revoked_events(s):
    return s.execute(select(AuditEvent).where(AuditEvent.chain == audit.SYSTEM_CHAIN,
                                              AuditEvent.action == "role_revoked")
                     .order_by(AuditEvent.seq)).scalars().all()


def test_access_review_of_this_qms_end_to_end_revokes_grants(engine, staff):
    """R-A11-12-3 R-A11-12-1 R-ISO-1 R-P11-10g-2 R-P11-10d-1 R-P11-50-1 R-P11-10e-1: attest
    (signed, not by the subject), QMS grants marked revoke are revoked and audited, the admin
    confirms (signed), ISMS signs off (signed)."""
    assert engine.system_name == "QMS"  # the engine's default; this review is of the QMS
    r = open_review(engine, staff)
    assert (r.number, r.state) == ("AR-2026-0001", "review")
    assert "capa_owner" in roles(engine, staff["owner"])

    # sam's own grant is on the list: sam may not decide it (another reviewer does, R-WF-23)
    with pytest.raises(PopulationFixed, match="row 4 is about you") as exc:
        engine.fire(r.number, "attest", staff["sam"], {"grants": grants(staff)},
                    signature=sign(staff["sam"]))
    assert exc.value.field == "grants"
    undecided = [{k: v for k, v in g.items() if k != "decision"} if g["user"] == "sam" else g
                 for g in grants(staff)]
    with pytest.raises(GuardFailed, match="rows about your own access") as exc:
        engine.fire(r.number, "attest", staff["sam"], {"grants": undecided},
                    signature=sign(staff["sam"]))
    assert exc.value.transition == "attest"
    assert "capa_owner" in roles(engine, staff["owner"])

    r = engine.fire(r.number, "attest", staff["sonia"],
                    {"grants": grants(staff), "review_comments": "One leaver."},
                    signature=sign(staff["sonia"]))
    assert r.state == "revocation"

    # the QMS grant marked revoke is revoked; the others are kept
    assert roles(engine, staff["owner"]) == {"employee"}
    assert "process_owner" in roles(engine, staff["po"])
    assert "qa" in roles(engine, staff["qa"])
    with engine.reader() as s:
        olga = identity.get_user(s, staff["owner"])
        sonia = identity.get_user(s, staff["sonia"])
        g = s.execute(select(RoleGrant).where(RoleGrant.user_id == olga.id,
                                              RoleGrant.role == "capa_owner")).scalar_one()
        assert (g.revoked_at, g.revoked_by_id, g.revoke_reason) == (
            clock.now(), sonia.id, f"access review {r.number}")
        (ev,) = role_revoked_events(s)
        assert ev.actor_id == sonia.id and ev.actor_name == "Sonia System-Owner"
        assert ev.changes == {"username": "olga", "role": ["capa_owner", None]}
        assert ev.reason == f"access review {r.number}"
        assert ev.at == clock.now()
        rec = s.execute(select(Record).where(Record.number == r.number)).scalar_one()
        assert [(t.state, t.role) for t in s.execute(
            select(Task).where(Task.record_id == rec.id, Task.status == TaskStatus.OPEN)
        ).scalars()] == [("revocation", "access_admin")]

    with pytest.raises(NotAuthorized):
        engine.fire(r.number, "confirm_revocations", staff["ivy"],
                    {"revocation_notes": "x"}, signature=sign(staff["ivy"]))
    r = engine.fire(r.number, "confirm_revocations", staff["adam"],
                    {"revocation_notes": "QMS: revoked by the review itself."},
                    signature=sign(staff["adam"]))
    assert r.state == "sign_off"

    # QA and ISMS hold grants in the QMS's own review: a row about the signer, decided by
    # the system owner, no longer bars the sign-off (else the review could never close)
    r = engine.fire(r.number, "sign_off", staff["ivy"], {"sign_off_comments": "Complete."},
                    signature=sign(staff["ivy"]))
    assert r.state == "closed"
    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == r.number)).scalar_one()
        assert rec.outcome == "done"
        sigs = s.execute(select(Signature).where(Signature.record_id == rec.id)
                         .order_by(Signature.id)).scalars().all()
        assert [(x.meaning, x.signer_name, x.signer_role) for x in sigs] == [
            ("Reviewed and attested", "Sonia System-Owner", "system_owner"),
            ("Revocations executed", "Adam Access-Admin", "access_admin"),
            ("Reviewed and approved", "Ivy ISMS", "isms")]
        report = integrity.verify(s, engine.signing_key)
        assert report.ok, [str(p) for p in report.problems]


@pytest.mark.parametrize("system, revoked", [
    ("QMS", True), ("qms", True), ("LIMS", False), ("SAP ERP", False)])
def test_only_reviews_of_this_qms_revoke_qms_grants(engine, staff, system, revoked):
    """R-A11-12-3 R-A11-12-1: a review of another system lists revocations for its own
    administrator; it must not touch the QMS's role grants."""
    r = open_review(engine, staff, system=system)
    with engine.reader() as s:
        before = len(role_revoked_events(s))
    r = engine.fire(r.number, "attest", staff["sonia"], {"grants": grants(staff)},
                    signature=sign(staff["sonia"]))
    assert r.state == "revocation"
    assert ("capa_owner" not in roles(engine, staff["owner"])) is revoked
    with engine.reader() as s:
        assert len(role_revoked_events(s)) - before == (1 if revoked else 0)
        olga = identity.get_user(s, staff["owner"])
        grant = s.execute(select(RoleGrant).where(RoleGrant.user_id == olga.id,
                                                  RoleGrant.role == "capa_owner")).scalar_one()
        assert (grant.revoked_at is not None) is revoked


@pytest.mark.parametrize("signer", ["ivy", "qa2"])
def test_sign_off_by_isms_or_qa(engine, staff, signer):
    """R-A11-12-3 R-P11-10g-1: either ISMS or QA signs off; other roles may not."""
    r = open_review(engine, staff)
    r = engine.fire(r.number, "attest_no_revocations", staff["sonia"],
                    {"grants": grants(staff, olga="keep")}, signature=sign(staff["sonia"]))
    assert r.state == "sign_off"
    for outsider in ("adam", "sonia"):
        with pytest.raises(NotAuthorized):
            engine.fire(r.number, "sign_off", staff[outsider], signature=sign(staff[outsider]))
    r = engine.fire(r.number, "sign_off", staff[signer], signature=sign(staff[signer]))
    assert r.state == "closed"
    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == r.number)).scalar_one()
        sig = s.execute(select(Signature).where(Signature.record_id == rec.id,
                                                Signature.transition == "sign_off")).scalar_one()
        assert sig.signer_role == {"ivy": "isms", "qa2": "qa"}[signer]
        assert sig.meaning == "Reviewed and approved"
        assert role_revoked_events(s) == []


def test_attester_cannot_sign_off_the_same_review(engine, staff, make_user):
    """R-P11-10g-2: reviewer and sign-off are two people, even when one holds both roles."""
    sol = make_user("sol", "system_owner", "qa", "employee")
    r = open_review(engine, staff)
    engine.fire(r.number, "attest_no_revocations", sol, {"grants": grants(staff, olga="keep")},
                signature=sign(sol))
    with pytest.raises(SegregationOfDuties, match="attest_no_revocations"):
        engine.fire(r.number, "sign_off", sol, signature=sign(sol))
    assert engine.get(r.number).state == "sign_off"


@pytest.mark.parametrize("transition, items, message", [
    ("attest", [{"user": "olga", "role": "capa_owner"}], "needs a decision"),
    ("attest", [{"user": "olga", "role": "capa_owner", "decision": "revoke"}],
     "revocation needs a comment"),
    ("attest", [{"user": "olga", "role": "capa_owner", "decision": "keep"}],
     "No grant is marked revoke"),
    ("attest_no_revocations",
     [{"user": "olga", "role": "capa_owner", "decision": "revoke", "comment": "left"}],
     "Some grants are marked revoke"),
])
def test_attestation_checks(engine, staff, transition, items, message):
    """R-P11-10f-2 R-A11-12-3: every grant decided, revocations justified, right branch."""
    r = open_review(engine, staff)
    with pytest.raises(GuardFailed, match=message):
        engine.fire(r.number, transition, staff["sonia"], {"grants": items},
                    signature=sign(staff["sonia"]))
    assert engine.get(r.number).state == "review"
    assert "capa_owner" in roles(engine, staff["owner"])


def test_return_to_review_keeps_revocations_and_needs_a_reason(engine, staff):
    """R-P11-10e-7: sign-off may send the review back; executed revocations stay."""
    r = open_review(engine, staff)
    engine.fire(r.number, "attest", staff["sonia"], {"grants": grants(staff)},
                signature=sign(staff["sonia"]))
    engine.fire(r.number, "confirm_revocations", staff["adam"], {"revocation_notes": "done"},
                signature=sign(staff["adam"]))
    with pytest.raises(ReasonRequired):
        engine.fire(r.number, "return_to_review", staff["ivy"],
                    {"sign_off_comments": "Scope incomplete"})
    r = engine.fire(r.number, "return_to_review", staff["ivy"],
                    {"sign_off_comments": "Scope incomplete"}, reason="Service accounts missing")
    assert r.state == "review"
    assert "capa_owner" not in roles(engine, staff["owner"])


def test_cancel_needs_a_reason(engine, staff):
    """R-P11-10e-7 R-P11-10c-1."""
    r = open_review(engine, staff)
    with pytest.raises(ReasonRequired):
        engine.fire(r.number, "cancel", staff["ivy"])
    with pytest.raises(NotAuthorized):
        engine.fire(r.number, "cancel", staff["sonia"], reason="x")
    r = engine.fire(r.number, "cancel", staff["ivy"], reason="Opened for the wrong period")
    assert r.state == "cancelled" and engine.get(r.number).outcome == "void"
