"""The public API for embedders (workflow/__init__.py, docs/architecture.md) stays importable
from the package root, and the error tree keeps one base with a code per class."""

from __future__ import annotations

import subprocess
import sys

import workflow
from workflow import errors


def test_every_public_name_resolves_and_errors_share_one_base():
    for name in workflow.__all__:
        value = getattr(workflow, name)
        assert value is not None, name
    assert workflow.Engine.__module__ == "workflow.engine.core"
    assert callable(workflow.open_engine)
    for name in workflow.__all__:
        value = getattr(workflow, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, errors.WorkflowError), name
    # every error class of the tree is public
    tree = {n for n, v in vars(errors).items()
            if isinstance(v, type) and issubclass(v, errors.WorkflowError)}
    assert tree <= set(workflow.__all__)


def test_importing_the_package_root_stays_light():
    """``import workflow`` (and the kernel) must not pull in the engine, SQLAlchemy's ORM
    models or Flask: the public names load on first use."""
    code = ("import sys, workflow, workflow.clock; "
            "print(sorted(m for m in sys.modules if m.startswith(('workflow.', 'flask'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['workflow.clock']"


def test_all_lists_exactly_what_the_package_exports():
    assert sorted(workflow.__all__) == sorted(workflow._EXPORTS)
