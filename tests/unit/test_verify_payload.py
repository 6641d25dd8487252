"""verify-audit's fast path hashes exactly the bytes the engine hashed: the payload written out
directly (workflow/audit/trail.py ``payload_bytes``) is the canonical JSON of the payload dict,
for every value an event row can hold, also the odd ones a row changed behind the
application's back can hold. No database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from workflow import canonical
from workflow.audit.trail import PAYLOAD_FIELDS, payload_bytes, row_payload

BASE = {"chain": "record:7", "seq": 3, "at": "2026-03-01 10:11:12.123456", "actor_id": 4,
        "actor_name": "Quinn QA", "action": "update", "record_id": 7, "record_version": 2,
        "definition_hash": "ab" * 32, "transition": None, "from_state": None,
        "to_state": None, "changes": {"z": [None, 1], "a": ["x", "é\u2028\x01\"\\"]},
        "reason": None, "prev_hash": "k1:abc"}


class Text(str):
    pass


ODD = [
    ("seq", 3.0), ("seq", True), ("seq", "3"), ("seq", 10**30), ("actor_id", False),
    ("record_version", 2.5), ("reason", "naïve — ✓ \n\t\u0000"), ("reason", Text("sub")),
    ("actor_name", None), ("changes", None), ("changes", []), ("changes", {"n": float("inf")}),
    ("changes", {"b": {"y": 1, "x": [1.5, True, None]}}), ("chain", b"bytes".decode()),
    ("at", datetime(2026, 3, 1, 10, 11, 12, 5, tzinfo=UTC)),
    ("at", datetime(2026, 3, 1, 12, 11, 12, tzinfo=timezone(timedelta(hours=2)))),
    ("at", datetime(2026, 3, 1, 10, 11, 12)), ("at", "2026-03-01T10:11:12+00:00"),
    ("transition", 0), ("from_state", ""), ("prev_hash", None),
]


def _row(values: dict) -> tuple:
    return (*(values[f] for f in PAYLOAD_FIELDS), 99, "k1:tag")


@pytest.mark.parametrize("field,value", [(None, None), *ODD])
def test_payload_bytes_are_the_canonical_json_of_the_payload(field, value):
    """R-PERF-50: the bytes verify-audit hashes for an event row are exactly
    ``canonical.dumps(payload).encode()`` whatever the row holds (plain values written
    directly, anything else through the general encoder), so the fast path accepts exactly
    what the engine's hash accepts."""
    values = dict(BASE) if field is None else {**BASE, field: value}
    row = _row(values)
    try:
        expected = canonical.dumps(row_payload(row)).encode()
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            payload_bytes(row)
        return
    assert payload_bytes(row) == expected
