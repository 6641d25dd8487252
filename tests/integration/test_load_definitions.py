"""Loading shipped definitions never bypasses change control (R-A11-10-1, R-P11-10k-1)."""

from __future__ import annotations

import shutil

from sqlalchemy import func, select

from workflow.definition import DEFAULT_DEFINITIONS_DIR
from workflow.models import DefinitionVersion
from workflow.service import load_definitions


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
