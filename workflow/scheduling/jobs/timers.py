"""Workflow timers as a scheduled job."""

from __future__ import annotations

from typing import Any

from workflow.scheduling.context import JobContext


def run_timers(ctx: JobContext) -> dict[str, Any]:
    """Fire due timers (escalations set by the definitions) through the engine, as the system
    user (``Engine.run_due_timers``; each timer in its own transaction)."""
    return {"timers": len(ctx.engine.run_due_timers())}
