"""The ``qms`` command line: safe re-runs of init, definition validation with located
problems, clear one-line errors, schema upgrade (R-P11-10a-2, R-P11-10a-3, R-P11-10k-1,
R-A11-4-2, R-A11-5-1, R-P11-10f-1, R-P11-10f-3).

Commands run in-process through click's CliRunner with QMS_DATABASE_URL and
QMS_SIGNATURE_KEY set, against a database of the test's own (SQLite file, or a fresh
PostgreSQL database when QMS_TEST_DATABASE_URL is set).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from click.testing import Result
from sqlalchemy import create_engine, text

from tests.factories import CLI_KEY_HEX, Qms, new_pg_database
from workflow import clock
from workflow.db import engines as db
from workflow.demo import DEMO_PASSWORD
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR

KEY_HEX = CLI_KEY_HEX
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # as tests/conftest.py
HEAD = ScriptDirectory.from_config(db.alembic_config("sqlite://")).get_current_head()


def _new_database(database_url: str, folder: Path, name: str) -> str:
    """An empty database (not even the schema), next to the test database (PostgreSQL: owned
    by the schema owner role; the URL returned connects as the runtime role, and
    :class:`~tests.factories.Qms` migrates as the owner)."""
    if not database_url.startswith("postgresql"):
        return f"sqlite:///{folder / (name + '.db')}"
    return new_pg_database(database_url, name)


def _drop_database(database_url: str, name: str) -> None:
    if database_url.startswith("postgresql"):
        admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def empty_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own with nothing in it (not even the schema)."""
    name = f"qms_cli_{uuid.uuid4().hex[:10]}"
    yield _new_database(database_url, tmp_path, name)
    _drop_database(database_url, name)


@pytest.fixture
def qms(empty_url: str) -> Iterator[Qms]:
    """``qms("init", "--demo")`` runs that command on ``empty_url``."""
    q = Qms(empty_url)
    yield q
    q.close()


@pytest.fixture(scope="module")
def demo_db(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database with the demo data (``qms init --demo``), shared by the tests of this
    module that change nothing or only add records of their own."""
    name = f"qms_demo_{uuid.uuid4().hex[:10]}"
    url = _new_database(database_url, tmp_path_factory.mktemp("demo"), name)
    q = Qms(url)
    clock.set(T0)  # the demo data's dates and numbers (module fixtures run before frozen_clock)
    try:
        result = q("init", "--demo")
    finally:
        clock.reset()
        q.close()
    assert result.exit_code == 0, result.output
    yield url
    _drop_database(database_url, name)


@pytest.fixture
def demo(demo_db: str) -> Iterator[Qms]:
    q = Qms(demo_db)
    yield q
    q.close()


@pytest.fixture
def maintenance(demo_db: str) -> Iterator[Qms]:
    """``qms`` on the demo database with QMS_CLI_MAINTENANCE=1."""
    q = Qms(demo_db, env={"QMS_CLI_MAINTENANCE": "1"})
    yield q
    q.close()


def counts(url: str) -> dict[str, int]:
    dbe = db.make_engine(url)
    try:
        with dbe.connect() as c:
            out = {t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                   for t in ("users", "role_grants", "definition_versions", "records",
                             "audit_events", "signatures", "tasks")}
            out["record_events"] = c.execute(text(
                "SELECT count(*) FROM audit_events WHERE chain <> 'system'")).scalar_one()
            return out
    finally:
        dbe.dispose()


def no_traceback(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ init


@pytest.mark.committed
def test_init_twice_is_harmless(qms, empty_url):
    """R-P11-10k-1 R-A11-4-2 R-P11-10a-3: `qms init` on a fresh database creates the schema and
    publishes every shipped definition; the second run publishes nothing and changes no count."""
    first = qms("init")
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert lines[0].startswith(f"database ready at revision {HEAD} (")
    shipped = sorted(p.stem for p in DEFAULT_DEFINITIONS_DIR.glob("*.yaml"))
    # the last line: the go-live the scheduler does not back-fill before (R-OPS-16)
    assert lines[-1] == "go-live 2026-03-02 09:00 UTC: the scheduler does not back-fill before it"
    lines = lines[:-1]
    # before it: this QMS registered as the first inventory entry (R-SYS-5), once
    assert lines[-1].strip() == ("SYS-2026-0001: this QMS (QMS) registered in the system "
                                 "inventory, for its system owner to complete and QA to approve")
    lines = lines[:-1]
    assert [ln.split(":")[0].strip() for ln in lines[1:]] == shipped
    assert all(re.search(r": version 1 published \(sha256 [0-9a-f]{12}\)$", ln) for ln in lines[1:])
    after_first = counts(empty_url)
    assert after_first["definition_versions"] == len(shipped)

    second = qms("init")
    assert second.exit_code == 0, second.output
    lines2 = second.stdout.splitlines()
    assert lines2[0] == lines[0]
    assert lines2[-1] == first.stdout.splitlines()[-1]  # the go-live stays
    assert lines2[1:-1] == [ln.replace(" published ", " unchanged ") for ln in lines[1:]]
    assert counts(empty_url) == after_first
    no_traceback(second)


@pytest.mark.committed
def test_init_demo_twice_adds_nothing_the_second_time(qms, empty_url):
    """R-A11-4-2 R-P11-10a-2 R-P11-10e-1 R-DOC-15: `qms init --demo` twice: the second run adds
    no user, record or event, there are 88 demo records (with this QMS's inventory entry that
    init registers and the demo completes, and the training matrix's curricula and
    assignments), and `qms verify-audit` passes."""
    first = qms("init", "--demo")
    assert first.exit_code == 0, first.output
    assert "demo records: 88 (" in first.stdout
    after_first = counts(empty_url)
    # and the CAPA, deviation and breach notification the demo incidents raised, and the
    # periodic document review its timer opened (R-DOC-13)
    assert after_first["records"] == 88 + 3 + 1
    assert after_first["signatures"] > 0

    second = qms("init", "--demo")
    assert second.exit_code == 0, second.output
    assert "demo data already present (92 records); nothing added" in second.stdout
    assert counts(empty_url) == after_first

    verify = qms("verify-audit")
    assert verify.exit_code == 0, verify.output
    assert re.fullmatch(r"OK: \d+ chains, \d+ events, \d+ signatures verified\n", verify.stdout)
    assert f"{after_first['signatures']} signatures verified" in verify.stdout


# ------------------------------------------------------------------ records: clear errors


CAPA = ["--set", "title=Broken label", "--set", "description=Found at QC"]

BAD_INPUT = {
    "missing required field": (
        ["records", "start", "capa", "--as", "emma", "--set", "title=x"],
        "error: The data is not valid: description: is required"),
    "unknown workflow": (
        ["records", "start", "nope", "--as", "emma"],
        "error: There is no published workflow called 'nope'."),
    "unknown user": (
        ["records", "start", "capa", "--as", "nobody", *CAPA],
        "error: Unknown username or wrong password, or the account is locked"),
    "unknown field": (
        ["records", "start", "capa", "--as", "emma", *CAPA, "--set", "bogus=1"],
        "error: The data is not valid: bogus: is not a field of Corrective and Preventive Action"),
    "impossible date": (
        ["records", "start", "deviation", "--as", "emma", "--set", "title=x",
         "--set", "description=y", "--set", "occurred_on=2026-02-30",
         "--set", "discovered_on=2026-02-01", "--set", "area=Filling",
         "--set", "immediate_actions=none"],
        "error: The data is not valid: occurred_on: '2026-02-30' is not a date (YYYY-MM-DD)"),
    "wrong type from JSON": (
        ["records", "start", "capa", "--as", "emma", *CAPA, "--set", 'owner=["olga"]'],
        "error: The data is not valid: owner: must be a username"),
    "role missing to start": (
        ["records", "start", "training_assignment", "--as", "emma", "--set", "title=x"],
        "error: Starting a Training Assignment needs one of the roles: "),
    "unknown record": (
        ["records", "fire", "CAPA-2099-0001", "assign", "--as", "quinn"],
        "error: Record CAPA-2099-0001 does not exist or is not visible to you."),
    "transition not available": (
        ["records", "fire", "CAPA-2026-0002", "assign", "--as", "quinn", "--set", "owner=olga"],
        "error: CAPA-2026-0002 is in state 'plan_approval'; transition 'assign' is not possible"),
    "role missing to fire": (
        ["records", "fire", "CAPA-2026-0003", "submit_root_cause", "--as", "emma"],
        "error: Submit root cause on CAPA-2026-0003 needs one of these roles: "),
    "required field for the step": (
        ["records", "fire", "CAPA-2026-0003", "submit_root_cause", "--as", "olga"],
        "error: The data is not valid: root_cause_category: is required"),
    "stale version": (
        ["records", "fire", "CAPA-2026-0002", "approve_plan", "--as", "quinn",
         "--expected-version", "1"],
        "error: CAPA-2026-0002 changed while you were working on it (you had version 1"),
    "signature needed": (
        ["records", "fire", "CAPA-2026-0002", "cancel", "--as", "quinn", "--reason", "dup"],
        "error: Transition 'cancel' must be signed (meaning: 'Cancelled'); no signature was given."),
}


@pytest.mark.committed
@pytest.mark.parametrize("args, message", BAD_INPUT.values(), ids=list(BAD_INPUT))
def test_records_bad_input_is_one_clear_line(demo, maintenance, args, message):
    """R-A11-5-1 R-P11-10f-1 R-P11-10f-3 R-P11-10g-1: `qms records start/fire` with bad input
    prints one `error: ...` line, exits 1, shows no traceback and changes nothing (the
    record chains; the system trail records who authenticated). Users who need an
    authenticator (quinn, QA) act here in maintenance mode."""
    before = counts(demo.url)
    if "quinn" in args:
        result = maintenance(*args, "--maintenance")
    else:
        result = demo(*args, "--password-stdin", input=DEMO_PASSWORD + "\n")
    assert result.exit_code == 1, result.output
    no_traceback(result)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(message), line
    after = counts(demo.url)
    assert after.pop("audit_events") >= before.pop("audit_events")
    assert after == before


@pytest.mark.committed
def test_records_start_and_fire_work(demo, maintenance):
    """R-P11-10f-1 R-P11-10e-1: the happy path prints the number, state and version."""
    started = demo("records", "start", "capa", "--as", "emma", *CAPA, "--password-stdin",
                   input=DEMO_PASSWORD + "\n")
    assert started.exit_code == 0, started.output
    m = re.fullmatch(r"(CAPA-2026-\d{4}) created in state open \(version 1\)\n", started.stdout)
    assert m, started.stdout
    fired = maintenance("records", "fire", m.group(1).lower(), "assign", "--as", "quinn",
                        "--set", "owner=olga", "--expected-version", "1", "--maintenance")
    assert fired.exit_code == 0, fired.output
    assert fired.stdout == f"{m.group(1)} is now in state investigation (version 2)\n"
    assert demo("verify-audit").exit_code == 0


@pytest.mark.committed
@pytest.mark.parametrize("pairs, message", [
    (["title"], "--set takes FIELD=VALUE, not 'title'"),
    (["title=[1,2"], "title: not valid JSON"),
])
def test_records_malformed_option_is_a_usage_error(demo, pairs, message):
    """R-A11-5-1: a malformed --set is a usage error (exit 2) with the usage line."""
    args = ["records", "start", "capa", "--as", "emma", "--password-stdin"]
    for p in pairs:
        args += ["--set", p]
    result = demo(*args)
    assert result.exit_code == 2, result.output
    no_traceback(result)
    assert f"Error: {message}" in result.stderr


@pytest.mark.committed
def test_records_start_on_uninitialised_database_is_one_clear_line(qms):
    """R-A11-5-1: a command on an empty database says what to do, in one line."""
    result = qms("records", "start", "capa", "--as", "emma", *CAPA)
    assert result.exit_code == 1
    no_traceback(result)
    assert result.stderr.startswith("error: the database is not initialised: run `qms init`")


# ------------------------------------------------------------------ db upgrade


@pytest.mark.committed
def test_db_upgrade_reports_the_revision(qms, empty_url):
    """R-P11-10a-3: `qms db upgrade` creates the schema and reports the revision; it is
    idempotent, and `qms db current` shows the same head."""
    assert qms("db", "current").stdout == "empty (run `qms db upgrade`)\n"
    for _ in range(2):
        result = qms("db", "upgrade")
        assert result.exit_code == 0, result.output
        assert re.fullmatch(rf"database at revision {HEAD} \((sqlite|postgresql)\S*\)\n",
                            result.stdout), result.stdout
    current = qms("db", "current")
    assert current.exit_code == 0
    assert current.stdout == f"{HEAD}\n"
    assert counts(empty_url)["records"] == 0



def test_demo_has_curricula_and_people_in_every_training_state(demo_db: str) -> None:
    """R-TRN-16: the demo's training matrix has curricula and people current, due, overdue
    and not trained (what the matrix page shows a visitor)."""
    from sqlalchemy.orm import Session

    from workflow.registry import Registry
    from workflow.training import matrix as tm

    dbe = db.make_engine(demo_db)
    try:
        with Session(dbe) as s:
            m = tm.matrix(s, Registry(), now=T0)
    finally:
        dbe.dispose()
    assert len(m.columns) >= 4 and len(m.people) >= 10
    assert {k: m.counts[k] > 0 for k in ("current", "due", "overdue", "missing")} == {
        "current": True, "due": True, "overdue": True, "missing": True}
