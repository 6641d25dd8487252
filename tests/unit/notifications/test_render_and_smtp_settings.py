"""Message templates and SMTP settings: pure functions, no database and no server."""

from __future__ import annotations

import pytest

from notifications.channels import SmtpConfigError, SmtpSettings
from notifications.render import render

BASE = "https://qms.example.com"


@pytest.fixture(autouse=True)
def base_url(monkeypatch):
    monkeypatch.setenv("QMS_BASE_URL", BASE)  # tests/conftest.py re-reads the settings


@pytest.mark.parametrize("kind, subject", [
    ("generic", "CAPA-2026-0001: New CAPA to assign"),
    ("due_soon", "Reminder: CAPA-2026-0001: New CAPA to assign"),
    ("overdue", "Overdue: CAPA-2026-0001: New CAPA to assign"),
    ("escalation", "CAPA-2026-0001: New CAPA to assign"),
    ("review_opened", "CAPA-2026-0001: New CAPA to assign"),
    ("effectiveness_due", "CAPA-2026-0001: New CAPA to assign"),
    ("task_assigned", "Task for you: CAPA-2026-0001: New CAPA to assign"),
    ("signature_requested", "Signature requested: CAPA-2026-0001: New CAPA to assign"),
    ("account_locked", "Security: CAPA-2026-0001: New CAPA to assign"),
    ("no_such_kind", "CAPA-2026-0001: New CAPA to assign"),
])
def test_templates_render_with_the_record_link(kind, subject):
    s, body = render(kind, subject="CAPA-2026-0001: New CAPA to assign", body="Body text.",
                     recipient="Quinn QA", record_number="CAPA-2026-0001",
                     record_title="Label mix-up",
                     link=f"{BASE}/records/CAPA-2026-0001")
    assert s == subject
    assert body.startswith("Hello Quinn QA,")
    assert f"Open it: {BASE}/records/CAPA-2026-0001" in body
    assert f"{BASE}/account/profile" in body  # where the person chooses what reaches them


@pytest.mark.parametrize("url, expected", [
    ("smtp://mail.example.com", ("mail.example.com", 25, None, None, False, False)),
    ("smtp://u%40x:p%3Aw@mail:587?starttls=1", ("mail", 587, "u@x", "p:w", False, True)),
    ("smtps://u:p@mail", ("mail", 465, "u", "p", True, False)),
])
def test_smtp_url(url, expected):
    s = SmtpSettings.from_url(url)
    assert (s.host, s.port, s.username, s.password, s.use_ssl, s.starttls) == expected
    assert "p" not in s.redacted().split("@")[0].split(":")[-1] or "***" in s.redacted()


@pytest.mark.parametrize("url", ["http://mail", "smtp://", "smtps://mail?starttls=1"])
def test_bad_smtp_url(url):
    with pytest.raises(SmtpConfigError):
        SmtpSettings.from_url(url)


def test_smtp_settings_from_environment():
    env = {"QMS_SMTP_URL": "smtp://mail:2525", "QMS_SMTP_MAX_ATTEMPTS": "7",
           "QMS_SMTP_FROM": "qa@example.com"}
    s = SmtpSettings.from_env(env)
    assert (s.port, s.max_attempts, s.sender, s.retry_seconds) == (2525, 7, "qa@example.com", 60)
    assert SmtpSettings.from_env({}) is None
