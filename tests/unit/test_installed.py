"""What an installed wheel (no source checkout) does with the commands that need one
(issue 16, item 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow.validation import report
from workflow.validation.report import PackError


def test_validation_report_outside_a_checkout_says_what_it_needs(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """R-OPS-1: installed from the wheel there is no test suite and no docs/requirements.yaml;
    ``qms validation-report`` says so in one line instead of failing on a missing file, and
    writes nothing."""
    monkeypatch.setattr(report, "REPO_ROOT", tmp_path / "site-packages")
    with pytest.raises(PackError, match="source checkout.*--results and --requirements"):
        report.write_pack(out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
