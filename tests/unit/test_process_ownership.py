"""Every shipped workflow names its process owner, and administration stays apart from quality
decisions (R-A11-2-1). No database: the shipped definitions are read as data."""

from __future__ import annotations

import pytest

from workflow.errors import DefinitionError
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR, load_directory, load_text


def test_shipped_definitions_name_a_declared_process_owner_and_admin_never_signs():
    """R-A11-2-1: each definition's process_owner is one of its declared roles; the
    administrator role (accounts and grants) signs no step of any shipped workflow, so
    administering the system and approving quality records stay with different roles."""
    defs = load_directory()
    assert defs
    for key, d in defs.items():
        assert d.process_owner in d.roles, key
        signers = {r for t in d.transitions.values() if t.signature for r in t.signature.roles}
        assert "admin" not in signers, key
        assert d.process_owner != "admin", key


def test_a_process_owner_that_is_not_a_declared_role_is_refused_at_its_line():
    """R-A11-2-1: naming an undeclared process owner is a validation error, not a silent gap."""
    source = (DEFAULT_DEFINITIONS_DIR / "capa.yaml").read_text()
    assert "process_owner: qa" in source
    with pytest.raises(DefinitionError) as info:
        load_text(source.replace("process_owner: qa", "process_owner: nobody", 1), "capa.yaml")
    assert any("nobody" in str(p) and str(p).startswith("capa.yaml:")
               for p in info.value.problems), info.value.problems
