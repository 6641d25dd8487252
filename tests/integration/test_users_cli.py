"""``qms users ...``: administration from the command line, each change audited with the
operator and the reason, bad input refused with one clear line (issue 3, item 9)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.integration.test_cli import KEY_HEX, Qms, _drop_database, _new_database
from workflow.db import engines as db
from workflow.db.models import AuditEvent, User
from workflow.engine.core import Engine
from workflow.errors import AccountLocked, LoginFailed
from workflow.identity import sessions
from workflow.identity import users as identity
from workflow.registry import Registry


@pytest.fixture
def qms(database_url: str, tmp_path: Path) -> Iterator[Qms]:
    name = f"qms_users_{uuid.uuid4().hex[:10]}"
    url = _new_database(database_url, tmp_path, name)
    q = Qms(url)
    assert q("init").exit_code == 0
    yield q
    q.close()
    _drop_database(database_url, name)


def engine_on(url: str) -> tuple[Engine, object]:
    dbe = db.make_engine(url)
    return Engine(db.make_sessionmaker(dbe), bytes.fromhex(KEY_HEX), registry=Registry()), dbe


def events(url: str, action: str) -> list[AuditEvent]:
    eng, dbe = engine_on(url)
    try:
        with eng.reader() as s:
            return s.execute(select(AuditEvent).where(AuditEvent.action == action)
                             .order_by(AuditEvent.id)).scalars().all()
    finally:
        dbe.dispose()


@pytest.mark.committed
def test_create_grant_revoke_deactivate_with_reasons(qms):
    """R-P11-100a-1 R-P11-200-4 R-A11-12-1: each admin change is audited with its reason and
    the operating-system account; the temporary password must be changed."""
    r = qms("users", "create", "zoe", "--name", "Zoe Analyst", "--role", "employee",
            "--reason", "new hire HR-1234")
    assert r.exit_code == 0, r.output
    assert "temporary password" in r.output
    temp = r.output.strip().rsplit(": ", 1)[1]
    eng, dbe = engine_on(qms.url)
    try:
        checked = sessions.check_login_password(eng, "zoe", temp)
        assert checked.must_change_password
    finally:
        dbe.dispose()
    assert qms("users", "grant", "zoe", "qa", "--reason", "QA transfer").exit_code == 0
    assert qms("users", "revoke", "zoe", "qa", "--reason", "cover ended").exit_code == 0
    assert qms("users", "deactivate", "zoe", "--reason", "left the company").exit_code == 0
    listing = qms("users", "list").output
    assert "zoe" in listing and "DEACTIVATED" in listing
    created = events(qms.url, "user_created")[-1]
    assert created.reason.startswith("new hire HR-1234 [qms CLI, OS user ")
    assert [e.reason.split(" [")[0] for e in events(qms.url, "role_revoked")] == ["cover ended"]
    r = qms("users", "create", "zoe", "--name", "Another Zoe", "--reason", "rehire")
    assert r.exit_code == 1 and "never reused" in r.stderr


@pytest.mark.committed
def test_unlock_and_reset_totp(qms):
    """R-P11-300c-1 R-P11-300d-1: unlock and authenticator reset from the CLI, audited."""
    qms("users", "create", "sam", "--name", "Sam Owner", "--role", "employee", "--reason", "t")
    eng, dbe = engine_on(qms.url)
    try:
        for _ in range(5):
            with pytest.raises((LoginFailed, AccountLocked)):
                sessions.check_login_password(eng, "sam", "wrong-password-here")
        with eng.reader() as s:
            assert identity.get_user(s, "sam").locked_at is not None
    finally:
        dbe.dispose()
    assert "locked" in qms("users", "list").output.lower()
    r = qms("users", "unlock", "sam", "--reason", "identity checked by phone")
    assert r.exit_code == 0, r.output
    eng, dbe = engine_on(qms.url)
    try:
        with eng.reader() as s:
            u = s.execute(select(User).where(User.username == "sam")).scalar_one()
            assert u.locked_at is None and u.failed_attempts == 0
    finally:
        dbe.dispose()
    r = qms("users", "reset-totp", "sam", "--reason", "phone lost")
    assert r.exit_code == 0
    assert events(qms.url, "totp_reset")[-1].reason.startswith("phone lost")


@pytest.mark.committed
@pytest.mark.parametrize("args, message", [
    (["users", "grant", "nobody", "qa", "--reason", "x"], "does not exist"),
    (["users", "grant", "admin", "Bad Role", "--reason", "x"], "not a valid role"),
    (["users", "create", "x", "--name", "X", "--reason", "x"], "not a valid username"),
    (["users", "revoke", "admin", "qa", "--reason", "x"], "does not hold the role"),
    (["users", "unlock", "admin", "--reason", "x"], "is not locked"),
    (["users", "deactivate", "admin", "--reason", " "], "--reason must say why"),
])
def test_bad_input_is_one_clear_line_and_changes_nothing(qms, args, message):
    """R-P11-10g-1: refused with one line; nothing written."""
    qms("users", "create", "admin", "--name", "Ada Admin", "--reason", "setup")
    before = len(events(qms.url, "role_granted")) + len(events(qms.url, "user_created"))
    r = qms(*args)
    assert r.exit_code in (1, 2)
    assert message in (r.stderr or r.output)
    assert "Traceback" not in r.output
    assert len(events(qms.url, "role_granted")) + len(events(qms.url, "user_created")) == before


@pytest.mark.committed
def test_notifications_requeue_cli(qms):
    """R-OPS-20: `qms notifications requeue --all` (or by id) queues dead messages again;
    naming both or neither is refused, an id that is not dead is named."""
    from workflow import clock
    from workflow.db.models import OutboxMessage

    eng, dbe = engine_on(qms.url)
    try:
        with eng.unit() as s:
            for i in range(3):
                s.add(OutboxMessage(created_at=clock.now(), recipient_role="nobody",
                                    subject=f"lost {i}", body="", status="dead", attempts=5,
                                    last_error="ConnectionRefusedError: [Errno 111]"))
        with eng.reader() as s:
            ids = s.execute(select(OutboxMessage.id).order_by(OutboxMessage.id)).scalars().all()
    finally:
        dbe.dispose()
    r = qms("notifications", "requeue")
    assert r.exit_code == 1 and "name the messages (IDS) or give --all" in r.output
    r = qms("notifications", "requeue", str(ids[0]), "999999")
    assert r.exit_code == 1
    assert "#999999 is not dead-lettered" in r.output and "1 message(s) queued again" in r.output
    r = qms("notifications", "requeue", "--all")
    assert r.exit_code == 0 and "2 message(s) queued again" in r.output
    assert "0 dead letter(s)" in qms("notifications", "dead").output
