"""In-app notifications in the web UI: the bell's unread count, the list with mark-as-read
(CSRF-protected, own notifications only), the e-mail preference, and the administrators'
page of dead-lettered messages (R-P11-30-1, R-P11-10d-1, R-P11-10d-2)."""

from __future__ import annotations

import re

from sqlalchemy import select

from notifications.dispatcher import dispatch
from tests.web.conftest import csrf, login
from workflow import clock
from workflow.audit import trail as audit
from workflow.db.models import AuditEvent, Notification, OutboxMessage
from workflow.identity import users as identity


def bell(html: str) -> int:
    m = re.search(r'aria-label="Notifications: (\d+) unread"', html)
    assert m, "no bell on the page"
    return int(m.group(1))


def capa_for_qa(engine):
    """Starting a CAPA notifies the QA role; the dispatcher makes it in-app."""
    r = engine.start("capa", "emma", {"title": "Label mix-up", "description": "d"})
    dispatch(engine, smtp=None)
    return r.number


def notification_ids(engine, username):
    with engine.reader() as s:
        u = identity.get_user(s, username)
        return s.execute(select(Notification.id).where(Notification.user_id == u.id)
                         .order_by(Notification.id)).scalars().all()


def test_bell_list_and_mark_as_read(client, account, engine):
    account("emma", "employee")
    account("quinn", "qa", "employee")
    login(client, "quinn")
    assert bell(client.get("/").get_data(as_text=True)) == 0
    number = capa_for_qa(engine)
    html = client.get("/").get_data(as_text=True)
    assert bell(html) == 1 and 'data-unread="1"' in html
    page = client.get("/notifications").get_data(as_text=True)
    assert f'<a href="/records/{number}">{number}: New CAPA to assign</a>' in page
    (nid,) = notification_ids(engine, "quinn")

    # R-P11-30-1: no token, no change
    r = client.post(f"/notifications/{nid}/read")
    assert r.status_code == 400
    assert bell(client.get("/").get_data(as_text=True)) == 1

    r = client.post(f"/notifications/{nid}/read",
                    data={"csrf_token": csrf(client, "/notifications"),
                          "back": "/notifications?unread=1"})
    assert r.status_code == 302 and r.headers["Location"] == "/notifications?unread=1"
    assert bell(client.get("/").get_data(as_text=True)) == 0
    with engine.reader() as s:
        assert s.get(Notification, nid).read_at == clock.now()
    assert "No unread notifications." in client.get("/notifications?unread=1").get_data(
        as_text=True)


def test_mark_all_read(client, account, engine):
    account("emma", "employee")
    account("quinn", "qa", "employee")
    capa_for_qa(engine)
    capa_for_qa(engine)
    login(client, "quinn")
    assert bell(client.get("/notifications").get_data(as_text=True)) == 2
    r = client.post("/notifications/read-all",
                    data={"csrf_token": csrf(client, "/notifications")}, follow_redirects=True)
    assert "2 notifications marked as read." in r.get_data(as_text=True)
    assert bell(r.get_data(as_text=True)) == 0


def test_nobody_reads_or_marks_someone_elses_notifications(client, account, engine):
    """R-P11-10d-2: another person's notification is neither listed nor markable."""
    account("emma", "employee")
    account("quinn", "qa", "employee")
    account("quentin", "qa", "employee")
    capa_for_qa(engine)
    theirs = notification_ids(engine, "quentin")[0]
    login(client, "quinn")
    token = csrf(client, "/notifications")
    client.post(f"/notifications/{theirs}/read", data={"csrf_token": token})
    with engine.reader() as s:
        assert s.get(Notification, theirs).read_at is None
    assert client.post("/notifications/999999/read", data={"csrf_token": token}
                       ).status_code == 404


def test_email_preference_is_saved_and_audited(client, account, engine):
    account("quinn", "qa", "employee")
    login(client, "quinn")
    r = client.post("/notifications/preference",
                    data={"csrf_token": csrf(client, "/notifications"), "mode": "digest"},
                    follow_redirects=True)
    assert "E-mail notifications: once a day (digest)." in r.get_data(as_text=True)
    with engine.reader() as s:
        assert identity.get_user(s, "quinn").notify_mode == "digest"
        ev = s.execute(select(AuditEvent).where(AuditEvent.chain == audit.SYSTEM_CHAIN,
                                                AuditEvent.action == "notify_mode_changed")
                       ).scalar_one()
        assert ev.changes == {"username": "quinn", "notify_mode": ["immediate", "digest"]}
    r = client.post("/notifications/preference",
                    data={"csrf_token": csrf(client, "/notifications"), "mode": "weekly"},
                    follow_redirects=True)
    assert "Choose immediately or once a day." in r.get_data(as_text=True)


def test_dead_letters_are_listed_for_administrators_only(client, account, engine):
    """R-P11-10d-1: the undeliverable-messages page needs the admin role; an administrator
    sees the message, its recipient and last error, and can queue it again."""
    account("quinn", "qa", "employee")
    account("ada", "admin", totp=True)
    with engine.unit() as s:
        s.add(OutboxMessage(created_at=clock.now(), recipient_role="nobody_role",
                            subject="Lost message", body="", status="pending", attempts=0))
    dispatch(engine, smtp=None)
    login(client, "quinn")
    assert client.get("/admin/notifications/dead").status_code == 403
    assert "Undeliverable" not in client.get("/").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf(client, "/")})

    totp = account.totp["ada"]
    login(client, "ada", totp=totp.at(clock.now()))
    html = client.get("/admin/notifications/dead").get_data(as_text=True)
    assert "Lost message" in html and "role nobody_role" in html
    assert "no active holder of the role" in html
    with engine.reader() as s:
        (m,) = s.execute(select(OutboxMessage).where(OutboxMessage.status == "dead")).scalars()
    r = client.post(f"/admin/notifications/dead/{m.id}/retry",
                    data={"csrf_token": csrf(client, "/admin/notifications/dead")},
                    follow_redirects=True)
    assert f"Message #{m.id} queued again" in r.get_data(as_text=True)
    with engine.reader() as s:
        assert s.get(OutboxMessage, m.id).status == "pending"


def test_retry_all_queues_every_dead_message_for_administrators_only(client, account, engine):
    """R-OPS-20: one button queues every dead message again; only administrators may."""
    account("quinn", "qa", "employee")
    account("ada", "admin", totp=True)
    with engine.unit() as s:
        for i in range(3):
            s.add(OutboxMessage(created_at=clock.now(), recipient_role="nobody_role",
                                subject=f"Lost message {i}", body="", status="pending",
                                attempts=0))
    dispatch(engine, smtp=None)
    login(client, "quinn")
    assert client.post("/admin/notifications/dead/retry-all",
                       data={"csrf_token": csrf(client, "/")}).status_code == 403
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    login(client, "ada", totp=account.totp["ada"].at(clock.now()))
    html = client.get("/admin/notifications/dead").get_data(as_text=True)
    assert "Retry all" in html
    r = client.post("/admin/notifications/dead/retry-all",
                    data={"csrf_token": csrf(client, "/admin/notifications/dead")},
                    follow_redirects=True)
    html = r.get_data(as_text=True)
    assert "3 messages queued again" in html and "Retry all" not in html
    with engine.reader() as s:
        assert not s.execute(select(OutboxMessage).where(OutboxMessage.status == "dead")).all()
    r = client.post("/admin/notifications/dead/retry-all",
                    data={"csrf_token": csrf(client, "/admin/notifications/dead")},
                    follow_redirects=True)
    assert "There was no undeliverable message." in r.get_data(as_text=True)
