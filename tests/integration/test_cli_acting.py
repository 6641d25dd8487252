"""The command line acts as a named person only with their credentials (issue 14, item 7):
``--as USER`` asks for USER's password (and authenticator code where USER has one), or acts
in an explicit maintenance mode that every event it writes names, with the OS user."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from tests.factories import CLI_KEY_HEX
from tests.integration.test_cli import CAPA, counts, demo, demo_db, maintenance, no_traceback
from workflow import clock
from workflow.bootstrap import action_kinds
from workflow.db import engines as db
from workflow.db.models import AuditEvent, Record, User
from workflow.demo import DEMO_PASSWORD
from workflow.engine.core import Engine
from workflow.errors import LOGIN_FAILED
from workflow.identity.totp import begin_totp_enrolment, confirm_totp_enrolment
from workflow.registry import Registry

__all__ = ["demo", "demo_db", "maintenance"]  # fixtures shared with test_cli
PW = DEMO_PASSWORD + "\n"
OS_USER = getpass.getuser()

pytestmark = pytest.mark.committed


@pytest.fixture
def direct(demo_db: str) -> Iterator[Engine]:
    """An engine on the demo database with the command line's key (to read and to enrol)."""
    dbe = db.make_engine(demo_db)
    yield Engine(
        db.make_sessionmaker(dbe), bytes.fromhex(CLI_KEY_HEX), registry=Registry(), actions=action_kinds()
    )
    dbe.dispose()


def events(engine: Engine, **where: object) -> list[AuditEvent]:
    with engine.reader() as s:
        q = select(AuditEvent).order_by(AuditEvent.id)
        for k, v in where.items():
            q = q.where(getattr(AuditEvent, k) == v)
        return list(s.execute(q).scalars())


def record_events(engine: Engine, number: str) -> list[AuditEvent]:
    with engine.reader() as s:
        rec = s.execute(select(Record).where(Record.number == number)).scalar_one()
    return events(engine, record_id=rec.id)


def test_the_named_persons_password_is_asked_and_the_trail_says_where_it_came_from(demo, direct):
    """R-SEC-35 R-P11-10d-1 R-P11-10g-1: `records start --as emma` asks emma's password on
    the terminal (prompt on stderr, never echoed); the record's events name Emma and end with
    "[qms CLI, OS user ...]"; a cli_authenticated event records the OS user."""
    r = demo("records", "start", "capa", "--as", "emma", *CAPA, input=PW)
    assert r.exit_code == 0, r.output
    assert "Password for emma" in r.stderr and DEMO_PASSWORD not in r.output
    number = r.stdout.split()[0]
    evs = record_events(direct, number)
    assert evs and all(e.actor_name == "Emma Employee" for e in evs)
    assert all(e.reason.endswith(f"[qms CLI, OS user {OS_USER}]") for e in evs)
    (auth,) = [
        e for e in events(direct, action="cli_authenticated") if e.changes["command"] == "records start capa"
    ][-1:]
    assert auth.changes["username"] == "emma" and auth.changes["os_user"] == OS_USER


def test_a_wrong_password_is_refused_counted_and_changes_nothing(demo, direct):
    """R-SEC-35 R-P11-10d-1: a wrong password (stdin) is one line, exit 1, the login's
    vague message; it counts toward lockout like a failed login and starts nothing."""
    before = counts(demo.url)
    r = demo(
        "records", "start", "capa", "--as", "olga", *CAPA, "--password-stdin", input="not-her-password\n"
    )
    assert r.exit_code == 1 and r.stderr == f"error: {LOGIN_FAILED}\n"
    no_traceback(r)
    after = counts(demo.url)
    assert after["records"] == before["records"] and after["record_events"] == before["record_events"]
    last = events(direct, action="login_failed")[-1]
    assert last.changes.get("username") == "olga"
    with direct.reader() as s:
        assert s.execute(select(User.failed_attempts).where(User.username == "olga")).scalar_one() >= 1
    ok = demo("records", "start", "capa", "--as", "olga", *CAPA, "--password-stdin", input=PW)
    assert ok.exit_code == 0, ok.output
    with direct.reader() as s:  # a correct password resets the count, like a login
        assert s.execute(select(User.failed_attempts).where(User.username == "olga")).scalar_one() == 0


def test_without_credentials_the_command_line_is_refused_unless_in_maintenance_mode(
    demo, maintenance, direct
):
    """R-SEC-35 R-A11-12-1: `--maintenance` is refused while QMS_CLI_MAINTENANCE is off; with
    it on, the command acts without a password, a cli_maintenance event names the OS user and
    every event of the record says "maintenance mode ... OS user ..." in its reason."""
    r = demo("records", "start", "capa", "--as", "emma", *CAPA, "--maintenance")
    assert r.exit_code == 1 and r.stderr.startswith(
        "error: --maintenance is refused: maintenance mode is off (QMS_CLI_MAINTENANCE=1"
    )
    r = maintenance("records", "start", "capa", "--as", "emma", *CAPA, "--maintenance")
    assert r.exit_code == 0, r.output
    number = r.stdout.split()[0]
    tag = f"[maintenance mode, no credentials checked; qms CLI, OS user {OS_USER}]"
    evs = record_events(direct, number)
    assert evs and all(e.reason.endswith(tag) for e in evs)
    m = events(direct, action="cli_maintenance")[-1]
    assert (
        m.changes == {"username": "emma", "os_user": OS_USER, "command": "records start capa"}
        and m.reason == tag
    )
    r = demo("records", "start", "capa", *CAPA)
    assert r.exit_code == 2 and "--as USER is required" in r.stderr


def test_a_user_who_must_use_an_authenticator_gives_the_code_too(demo, direct):
    """R-SEC-35 R-P11-10d-1: quinn (QA: an authenticator is required) without one is sent to
    the web application to enrol; ivy with an authenticator gives the code (second line of
    stdin or --totp); a wrong code is refused and starts nothing."""
    r = demo(
        "records",
        "fire",
        "CAPA-2026-0001",
        "assign",
        "--as",
        "quinn",
        "--set",
        "owner=olga",
        "--password-stdin",
        input=PW,
    )
    assert r.exit_code == 1 and r.stderr.startswith("error: quinn must enrol an authenticator first")
    e = begin_totp_enrolment(direct, "ivy")
    confirm_totp_enrolment(direct, "ivy", pyotp.TOTP(e.secret).at(clock.now()))
    clock.advance(timedelta(seconds=31))
    r = demo("records", "start", "capa", "--as", "ivy", *CAPA, "--password-stdin", input=PW + "000000\n")
    assert r.exit_code == 1 and "authentication code is wrong" in r.stderr
    clock.advance(timedelta(seconds=31))
    code = pyotp.TOTP(e.secret).at(clock.now())
    r = demo("records", "start", "capa", "--as", "ivy", *CAPA, "--password-stdin", "--totp", code, input=PW)
    assert r.exit_code == 0, r.output
    auth = events(direct, action="cli_authenticated")[-1]
    assert auth.changes["username"] == "ivy" and auth.changes["mfa"] is True


def test_a_command_line_true_copy_names_the_person_who_made_it(demo, direct, tmp_path):
    """R-SEC-35 R-P11-10b-1: `qms export` needs --as (with the password) or maintenance
    mode; the audited export names that person, not the system account."""
    r = demo("export", "CAPA-2026-0001")
    assert r.exit_code == 2 and "--as USER is required" in r.stderr
    out = tmp_path / "copy.json"
    r = demo("export", "CAPA-2026-0001", "-o", str(out), "--as", "emma", "--password-stdin", input=PW)
    assert r.exit_code == 0, r.output
    assert '"number": "CAPA-2026-0001"' in out.read_text()
    ev = events(direct, action="record_exported")[-1]
    assert ev.actor_name == "Emma Employee" and ev.changes["number"] == "CAPA-2026-0001"
    assert ev.reason.startswith("true copy [qms CLI, OS user") and ev.reason.endswith(
        f"[qms CLI, OS user {OS_USER}]"
    )
