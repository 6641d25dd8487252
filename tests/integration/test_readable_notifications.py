"""Readable notifications (issue 17, item 8), received by a real SMTP server on loopback
(aiosmtpd): labels instead of state keys, the time of the event (not of delivery), the due
date as entered and the steps expected; messages whose task closed before delivery are
dropped; Message-ID / In-Reply-To / References per record; an HTML part rendered from the
same template as the text part; each person's preferences choose the channels."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from notifications.dispatcher import DROPPED, dispatch
from tests.factories import sign
from tests.integration import test_notifications
from tests.integration.test_notifications import BASE, outbox_rows
from workflow import clock
from workflow.db.models import Notification, User
from workflow.identity import profile as profiles
from workflow.identity import users as identity

# the real SMTP server on loopback and the base URL, as the delivery tests use them
smtp = test_notifications.smtp
base_url = test_notifications.base_url


@pytest.fixture
def crew(people, make_user):
    return {**people,
            "coord": make_user("tina", "training_coordinator", "employee",
                               full_name="Tina Coordinator"),
            "trainer": make_user("trent", "trainer", "employee", full_name="Trent Trainer")}


def assign(engine, crew, title="SOP-12 v5 <read> & understood", due="2026-12-10"):
    return engine.start("training_assignment", crew["coord"], {
        "title": title, "document": "SOP-12", "document_version": "5",
        "trainee": crew["emp"], "trainer": crew["trainer"], "due_date": due})


def set_zone(engine, username, zone):
    with engine.unit() as s:
        identity.get_user(s, username).timezone = zone


def test_messages_use_labels_event_time_due_date_and_expected_steps(engine, crew, smtp):
    """R-WF-41: "Training assigned to you" names the state by its label (not "is now
    assigned"), the due date as entered (2026-12-10, not the end-of-day instant), the steps
    expected of the trainee, and the time of the event in the person's zone, even when it is
    delivered hours later; the in-app message carries the event time too."""
    set_zone(engine, crew["emp"], "Europe/Berlin")
    r = assign(engine, crew)
    event = clock.now()
    clock.advance(timedelta(hours=3))  # the dispatcher runs late
    dispatch(engine, smtp=smtp.settings())
    (m,) = [m for m in smtp.messages if m["To"] == "emma@example.com"]
    text = m.get_body(preferencelist=("plain",)).get_content()
    assert f"{r.number} (SOP-12 v5 <read> & understood) is now Assigned." in text
    assert "is now assigned" not in text
    assert "Step:            Assigned" in text
    assert "Due:             2026-12-10" in text
    assert ("Expected of you: Complete training (read and understood); Complete training and "
            "take assessment") in text
    assert "Happened 2026-03-02 10:00 CET." in text  # 09:00 UTC, in Emma's zone
    with engine.reader() as s:
        emma = identity.get_user(s, crew["emp"])
        (n,) = s.execute(select(Notification).where(Notification.user_id == emma.id)).scalars()
        assert n.created_at == event  # not the delivery time
        assert "Step: Assigned" in n.body and "due 2026-12-10" in n.body


def test_html_part_is_rendered_from_the_same_template_and_escaped(engine, crew, smtp):
    """R-WF-41: each e-mail has a text part and an HTML part with the same facts; the record
    title is escaped in the HTML (no markup from record data) and the link is a link."""
    r = assign(engine, crew)
    dispatch(engine, smtp=smtp.settings())
    (m,) = [m for m in smtp.messages if m["To"] == "emma@example.com"]
    assert m.get_content_type() == "multipart/alternative"
    html = m.get_body(preferencelist=("html",)).get_content()
    text = m.get_body(preferencelist=("plain",)).get_content()
    assert "SOP-12 v5 &lt;read&gt; &amp; understood" in html and "<read>" not in html
    assert f'<a href="{BASE}/records/{r.number}">' in html
    for fact in ("Assigned", "2026-12-10", "Complete training (read and understood)",
                 "Happened 2026-03-02 09:00 UTC"):
        assert fact in html and fact in text


def test_messages_about_one_record_thread_together(engine, crew, smtp):
    """R-WF-41: every e-mail has its own Message-ID; all e-mails about one record refer to
    the record's thread (In-Reply-To and References), so mail clients group them."""
    r = assign(engine, crew, due="2026-03-10")
    dispatch(engine, smtp=smtp.settings())
    clock.advance(timedelta(days=9, hours=16))  # past the due date: the training is overdue
    assert engine.run_due_timers() == [f"{r.number}: mark_overdue -> overdue"]
    dispatch(engine, smtp=smtp.settings())
    about = [m for m in smtp.messages if r.number in m["Subject"]]
    assert len(about) >= 3  # assigned (trainee); overdue (coordinator, trainee)
    thread = f"<qms.record.{r.number}@example.com>"
    assert {m["In-Reply-To"] for m in about} == {thread}
    assert {m["References"] for m in about} == {thread}
    ids = [m["Message-ID"] for m in about]
    assert len(set(ids)) == len(ids) and all(i.endswith("@example.com>") for i in ids)


def test_a_message_whose_task_closed_before_fan_out_is_dropped(engine, crew, smtp):
    """R-WF-41: "Training assigned to you" is not delivered when the trainee completed the
    training before the dispatcher ran: the row is dropped with the reason, nobody gets it."""
    r = assign(engine, crew)
    engine.fire(r.number, "complete", crew["emp"], signature=sign(crew["emp"]))
    report = dispatch(engine, smtp=smtp.settings())
    assert report.dropped >= 1
    assert not [m for m in smtp.messages if "Training assigned" in m["Subject"]]
    rows = [o for o in outbox_rows(engine) if "Training assigned" in o.subject]
    assert rows and {o.status for o in rows} == {DROPPED}
    assert "closed before delivery" in rows[0].last_error
    with engine.reader() as s:
        emma = identity.get_user(s, crew["emp"])
        assert not s.execute(select(Notification).where(
            Notification.user_id == emma.id, Notification.subject.contains("assigned"))).first()


def test_an_email_whose_task_closed_after_fan_out_is_dropped_before_sending(engine, crew, smtp):
    """R-WF-41: the digest-free e-mail row made at fan-out is checked again at sending: the
    task closed in between, so the e-mail is dropped, not sent."""
    r = assign(engine, crew)
    settings = smtp.settings()
    smtp.stop()
    dispatch(engine, smtp=settings)  # fanned out; the mail server is down
    engine.fire(r.number, "complete", crew["emp"], signature=sign(crew["emp"]))
    smtp.start()
    clock.advance(timedelta(hours=1))
    report = dispatch(engine, smtp=settings)
    assert report.dropped >= 1
    assert not [m for m in smtp.messages if "Training assigned" in m["Subject"]]
    emails = [o for o in outbox_rows(engine, channel="email") if "Training" in o.subject
              and "assigned" in o.subject]
    assert emails and {o.status for o in emails} == {DROPPED}


def test_preferences_choose_email_and_in_app_per_kind(engine, crew, smtp):
    """R-WF-41 R-UI-52: Emma turned "other record news" off by e-mail: she gets the message
    in the app only; security messages cannot be turned off."""
    profiles.update_profile(engine, crew["emp"], actor=crew["emp"],
                            prefs={k: {"email": k != "generic", "in_app": True}
                                   for k in profiles.CHOOSABLE})
    assign(engine, crew)
    dispatch(engine, smtp=smtp.settings())
    assert not [m for m in smtp.messages if m["To"] == "emma@example.com"]
    with engine.reader() as s:
        emma = identity.get_user(s, crew["emp"])
        assert s.execute(select(Notification).where(Notification.user_id == emma.id)).first()
        assert profiles.wants(emma, "account_locked", "email")
    with engine.reader() as s:
        assert s.execute(select(User).where(User.username == crew["emp"])).scalar_one() \
            .notify_prefs["generic"] == {"email": False, "in_app": True}
