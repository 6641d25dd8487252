"""The engine: the one transactional path every change takes (see core.py)."""

from workflow.engine.context import ActionKind, Ctx, Result
from workflow.engine.core import Engine, unit_of_work

__all__ = ["ActionKind", "Ctx", "Engine", "Result", "unit_of_work"]
