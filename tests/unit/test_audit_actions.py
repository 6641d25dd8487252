"""Every action the code writes to the audit trail is in workflow/audit/actions.py, so the
audit-trail filter menu (built from that list, not from a scan of every event) offers it."""

from __future__ import annotations

import ast
from pathlib import Path

from workflow.audit.actions import ACTIONS

ROOT = Path(__file__).resolve().parents[2]
#: calls that write an audit event, and the position of their action argument
WRITERS = {"system_event": None, "record_event": None, "record_failure": None, "_audit": 3}


def _strings(node: ast.AST, consts: dict[str, str]) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            out.add(n.value)
        elif isinstance(n, ast.Name) and n.id in consts:
            out.add(consts[n.id])
    return out


def _written_actions() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in [*(ROOT / "workflow").rglob("*.py"), *(ROOT / "notifications").rglob("*.py"),
                 *(ROOT / "webapp").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                  for t in n.targets if isinstance(t, ast.Name)
                  and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            name = getattr(call.func, "attr", None) or getattr(call.func, "id", None)
            if name not in WRITERS:
                continue
            exprs = [k.value for k in call.keywords if k.arg == "action"]
            pos = WRITERS[name]
            if pos is not None and len(call.args) > pos:
                exprs.append(call.args[pos])
            for e in exprs:
                for s in _strings(e, consts):
                    found[s] = f"{path.relative_to(ROOT)}:{call.lineno}"
    return found


def test_every_written_action_is_listed():
    """R-UI-36: the filter menu lists every action the code writes (and the scan finds the
    usual ones, so it is looking at the right calls)."""
    written = _written_actions()
    assert {"create", "update", "transition", "sign", "login", "role_granted",
            "task_claimed", "integrity_check_failed", "password_changed"} <= set(written)
    missing = {a: where for a, where in written.items() if a not in ACTIONS}
    assert not missing, f"add these actions to workflow/audit/actions.py: {missing}"
