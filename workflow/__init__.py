"""The QMS workflow engine: declarative GxP workflows, one transactional path, audit trail.

This package never imports Flask or anything under ``webapp/``; it can be used and
tested on its own (see tests/unit and tests/integration).
"""

__version__ = "0.1.0"
