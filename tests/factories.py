"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

from workflow.signatures import VouchedSignature


def sign(username: str) -> VouchedSignature:
    """A signature whose credentials the test vouches for (identity checks are tested apart)."""
    return VouchedSignature(username, method="test")
