"""The hourly signed checkpoint (R-SEC-14): how far every audit chain had got, signed with the
anchor key and written outside the database (workflow/audit/checkpoints.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workflow import config
from workflow.audit import checkpoints
from workflow.scheduling.context import JobContext
from workflow.signatures.keys import key_provider


def audit_checkpoint(ctx: JobContext) -> dict[str, Any]:
    """Write a signed checkpoint of every audit chain, record, counter and definition hash
    into the checkpoint directory (QMS_CHECKPOINT_DIR, or the schedule's ``directory``)."""
    s = config.settings()
    directory = Path(ctx.params["directory"]) if ctx.params.get("directory") else \
        s.checkpoint_path
    path = checkpoints.take(ctx.engine, key_provider(s).anchor_keys(), directory,
                            system=ctx.engine.system_name)
    return {"file": str(path)}


def check_checkpoint(params: Mapping[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """The schedule's parameters: an optional ``directory`` (a path, as text)."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    directory = params.get("directory")
    if directory is not None and (not isinstance(directory, str) or not directory.strip()):
        problems.append((("directory",), "directory must be a path (text)"))
    unknown = sorted(set(params) - {"directory"})
    if unknown:
        problems.append(((unknown[0],), f"unknown parameter {unknown[0]!r} (known: directory)"))
    return problems
