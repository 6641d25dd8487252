"""Keys fail closed (issue 16, item 2): a command never makes up a key. Keys are created only
by ``qms init`` on a database without audit events or signatures, or ``qms keys create``;
a missing key on a database with history stops the command with a message naming the key
and where it was expected (R-OPS-3).

Runs the real commands on a database of the test's own (SQLite file, or a fresh PostgreSQL
database when QMS_TEST_DATABASE_URL is set), with the key files in a temporary instance
directory and no QMS_SIGNATURE_KEY.
"""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.factories import Qms, drop_pg_database, is_pg, new_pg_database
from workflow.db import engines as db
from workflow.db.models import AuditEvent


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[tuple[Qms, Path]]:
    """(qms on an empty database, the instance directory holding no key yet)."""
    name = f"qms_keys_{uuid.uuid4().hex[:10]}"
    url = (new_pg_database(database_url, name) if is_pg(database_url)
           else f"sqlite:///{tmp_path / 'site.db'}")
    instance = tmp_path / "instance"
    qms = Qms(url, key_hex="", env={"QMS_INSTANCE_DIR": str(instance)})
    yield qms, instance
    qms.close()
    if is_pg(database_url):
        drop_pg_database(database_url, name)


def _ok(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.output
    return str(result.output)


def test_init_creates_the_keys_on_a_new_database_only_once(site) -> None:
    """R-OPS-3: ``qms init`` on an empty database writes both key files (owner-only) and
    says so; a second run keeps them byte for byte."""
    qms, instance = site
    out = _ok(qms("init"))
    hmac_file, anchor_file = instance / "signature.key", instance / "anchor.key"
    assert f"created the HMAC signature key {hmac_file}" in out
    assert f"created the Ed25519 anchor key {anchor_file}" in out
    for f in (hmac_file, anchor_file):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    before = (hmac_file.read_bytes(), anchor_file.read_bytes())
    again = _ok(qms("init"))
    assert "created the" not in again
    assert (hmac_file.read_bytes(), anchor_file.read_bytes()) == before
    assert "OK" in _ok(qms("verify-audit"))


def test_a_missing_hmac_key_stops_every_command_and_none_creates_it(site) -> None:
    """R-OPS-3: with the HMAC key file gone from a database that holds audit events,
    verify-audit, init, db upgrade, users list and keys create (also --new-anchor) stop with
    exit status 1, naming the key and the path it was expected at; no key file appears and
    the database is unchanged."""
    qms, instance = site
    _ok(qms("init"))
    key = instance / "signature.key"
    key.unlink()
    dbe = db.make_engine(qms.url)
    with dbe.connect() as c:
        events = c.execute(select(AuditEvent.id)).scalars().all()
    assert events  # the database has history
    for args in (["verify-audit"], ["init"], ["db", "upgrade"], ["users", "list"],
                 ["keys", "create"], ["keys", "create", "--new-anchor"]):
        r = qms(*args)
        assert r.exit_code == 1, (args, r.output)
        assert "Traceback" not in r.output
        assert "HMAC signature key" in r.output and str(key) in r.output, (args, r.output)
        assert "restore" in r.output.lower()
        assert not key.exists(), args
    with dbe.connect() as c:
        assert c.execute(select(AuditEvent.id)).scalars().all() == events
    dbe.dispose()


def test_a_missing_anchor_key_is_refused_then_created_on_purpose_and_audited(site) -> None:
    """R-OPS-3: without the anchor key a checkpoint names the missing key and its path;
    ``qms keys create`` refuses on a database with history; ``--new-anchor`` creates it
    (never the HMAC key) and records ``key_created`` on the system trail."""
    qms, instance = site
    _ok(qms("init"))
    anchor = instance / "anchor.key"
    anchor.unlink()
    r = qms("audit", "checkpoint")
    assert r.exit_code == 1 and "Ed25519 anchor key is missing" in r.output
    assert str(anchor) in r.output and not anchor.exists()
    r = qms("keys", "create")
    assert r.exit_code == 1 and "audit events or signatures" in r.output
    assert "--new-anchor" in r.output and not anchor.exists()
    out = _ok(qms("keys", "create", "--new-anchor", "--reason", "anchor key lost, new one"))
    assert f"created the Ed25519 anchor key {anchor}" in out and "key_created" in out
    dbe = db.make_engine(qms.url)
    with dbe.connect() as c:
        actions = c.execute(select(AuditEvent.action, AuditEvent.reason)
                            .order_by(AuditEvent.id.desc()).limit(1)).one()
    dbe.dispose()
    assert actions[0] == "key_created" and "anchor key lost" in actions[1]
    assert "OK" in _ok(qms("verify-audit"))
    assert _ok(qms("audit", "checkpoint")).startswith("checkpoint ")


def test_keys_create_on_a_new_database_and_never_replaces_a_key(site) -> None:
    """R-OPS-3: ``qms keys create`` makes the missing keys of a new installation before
    ``qms init``, and never touches an existing key file."""
    qms, instance = site
    out = _ok(qms("keys", "create"))
    assert "created the HMAC signature key" in out and "created the Ed25519 anchor key" in out
    before = (instance / "signature.key").read_bytes()
    assert "nothing created" in _ok(qms("keys", "create"))
    assert (instance / "signature.key").read_bytes() == before
    _ok(qms("init"))
    assert (instance / "signature.key").read_bytes() == before
