"""``python -m workflow.cli``: the ``qms`` command without the web UI's ``serve``."""

from workflow.cli import main

main()
