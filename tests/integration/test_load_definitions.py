"""Loading shipped definitions never bypasses change control (R-A11-10-1, R-P11-10k-1)."""

from __future__ import annotations

import shutil

from sqlalchemy import func, select

from workflow.bootstrap import load_definitions
from workflow.db.models import DefinitionVersion
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR


def test_a_changed_published_workflow_is_not_published_by_load(engine, tmp_path):
    """R-A11-10-1: `qms init` / `definitions load` publish only workflows new to the database;
    a changed version of a published one must go through the signed publishing workflow."""
    folder = tmp_path / "defs"
    shutil.copytree(DEFAULT_DEFINITIONS_DIR, folder)
    capa = folder / "capa.yaml"
    capa.write_text(capa.read_text().replace("title: Corrective and Preventive Action",
                                             "title: Corrective and Preventive Actions"))
    lines = load_definitions(engine, folder, reason="upgrade")
    assert any(ln.startswith("capa: changed since published, NOT published") and
               "qms definitions publish" in ln for ln in lines)
    assert any(ln.startswith("deviation: version 1 unchanged") for ln in lines)
    with engine.reader() as s:
        assert s.execute(select(func.max(DefinitionVersion.version))
                         .where(DefinitionVersion.key == "capa")).scalar_one() == 1


def test_export_gives_back_the_approved_yaml(database_url, tmp_path):
    """R-P11-10k-1: a published version exports as the exact source that was approved, and
    re-imports to the same content hash."""
    import uuid

    from tests.integration.test_cli import Qms, _drop_database, _new_database
    from workflow.spec.load import load_text

    name = f"qms_export_{uuid.uuid4().hex[:8]}"
    url = _new_database(database_url, tmp_path, name)
    q = Qms(url)
    try:
        assert q("init").exit_code == 0
        out = tmp_path / "capa.yaml"
        r = q("definitions", "export", "capa", "-o", str(out))
        assert r.exit_code == 0, r.output
        shipped = (DEFAULT_DEFINITIONS_DIR / "capa.yaml").read_text()
        assert out.read_text() == shipped
        known = {"deviation": None, "change_request": None}
        assert load_text(out.read_text(), known_workflows=known).content_hash in r.stderr
        r = q("definitions", "export", "nope")
        assert r.exit_code == 1 and "There is no published 'nope'" in r.stderr
    finally:
        q.close()
        _drop_database(database_url, name)
