"""Guard and copy expressions, evaluated by simpleeval: never Python eval/exec.

An expression sees the record's fields by name (unset fields are ``None``) plus a few
builtins (``now``, ``today``, ``actor``, ``actor_roles``, ``initiator``, ``item``, ``user``)
and the functions
in :data:`FUNCTIONS`. Example: ``classification in ('major', 'critical') or capa_required``.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import simpleeval  # type: ignore[import-untyped]  # no stubs, no py.typed


class ExpressionError(Exception):
    pass


def add_days(day: str | None, days: int) -> str | None:
    """``add_days('2026-05-01', 14)`` -> ``'2026-05-15'`` (ISO dates compare as text)."""
    if day is None:
        return None
    return (date.fromisoformat(str(day)[:10]) + timedelta(days=int(days))).isoformat()


FUNCTIONS: dict[str, Any] = {
    "add_days": add_days,
    "len": len,
    "any": any,
    "all": all,
    "min": min,
    "max": max,
    "int": int,
    "str": str,
    "bool": bool,
}

_ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
    ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
    ast.Is, ast.IsNot, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod,
    ast.Name, ast.Load, ast.Store, ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict,
    ast.Subscript, ast.Slice, ast.Call, ast.IfExp, ast.GeneratorExp, ast.ListComp, ast.comprehension,
    ast.Attribute,
)


@lru_cache(maxsize=2048)
def _parse(text: str) -> ast.Expression:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{exc.msg} in {text!r}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(f"{type(node).__name__} is not allowed in {text!r}")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"private attribute {node.attr!r} is not allowed")
        if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name | ast.Attribute):
            raise ExpressionError(f"only named functions can be called in {text!r}")
    return tree


def names_in(text: str) -> set[str]:
    """The free names an expression reads (comprehension variables excluded)."""
    tree = _parse(text)
    bound = {
        n.id
        for comp in ast.walk(tree)
        if isinstance(comp, ast.comprehension)
        for n in ast.walk(comp.target)
        if isinstance(n, ast.Name)
    }
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    calls = {
        c.func.id for c in ast.walk(tree) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
    }
    return (names - bound) - (calls & set(FUNCTIONS))


def evaluate(text: str, names: Mapping[str, Any]) -> Any:
    """Evaluate ``text`` with ``names``; raises ExpressionError on any failure."""
    tree = _parse(text)
    evaluator = simpleeval.EvalWithCompoundTypes(names=dict(names), functions=FUNCTIONS)
    try:
        return evaluator.eval(text.strip(), previously_parsed=tree.body)
    except Exception as exc:  # simpleeval raises many types; report them uniformly
        raise ExpressionError(f"{type(exc).__name__}: {exc} (in {text!r})") from None
