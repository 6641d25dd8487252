"""Migration plan files and who signs them: pure data, no database."""

from __future__ import annotations

import pytest

from workflow.change_control.plans import PlanInvalid, parse_plan, signer_roles
from workflow.spec.load import load_directory


def test_bad_plan_files_are_refused_clearly():
    """R-WF-10: malformed plans are refused with every problem at once."""
    with pytest.raises(PlanInvalid) as exc:
        parse_plan("id: X\nworkflow: capa\nfrom_version: one\nmapping: [a]\nextra: 1\n")
    text = str(exc.value)
    for part in ("unknown key 'extra'", "'to_version' is required",
                 "'from_version' must be a version number", "'mapping' must map"):
        assert part in text, text


def test_signer_roles_are_qa_or_the_process_owner():
    """R-WF-10: who may sign a migration follows the definition's process_owner."""
    shipped_definitions = load_directory()
    assert signer_roles(shipped_definitions["capa"]) == ("qa",)
    assert signer_roles(shipped_definitions["training_assignment"]) == \
        ("qa", "training_coordinator")
