"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner, Result

from workflow.cli import main
from workflow.db import engines as db
from workflow.signatures.mac import VouchedSignature

#: the server key the command-line tests run `qms` with
CLI_KEY_HEX = "44" * 32


def sign(username: str) -> VouchedSignature:
    """A signature whose credentials the test vouches for (identity checks are tested apart)."""
    return VouchedSignature(username, method="test")


class Qms:
    """Runs ``qms`` commands in-process on one database; closes the engines they open."""

    def __init__(self, url: str, key_hex: str = CLI_KEY_HEX,
                 env: dict[str, str] | None = None) -> None:
        self.url = url
        self.runner = CliRunner(env={"QMS_DATABASE_URL": url, "QMS_SIGNATURE_KEY": key_hex,
                                     **(env or {})})
        self.engines: list[Any] = []

    def __call__(self, *args: str, input: str | None = None) -> Result:
        real = db.make_engine

        def tracking(*a: Any, **kw: Any) -> Any:
            self.engines.append(real(*a, **kw))
            return self.engines[-1]

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(db, "make_engine", tracking)
            return self.runner.invoke(main, list(args), input=input)

    def close(self) -> None:
        for e in self.engines:
            e.dispose()
        self.engines.clear()
