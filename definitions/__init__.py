"""The shipped workflow definitions (one ``*.yaml`` per workflow), their JSON Schema
(``workflow.schema.json``) and the scheduler's ``schedules/schedules.yaml``.

A package (and no code) so that the wheel carries these files and the engine finds them
through :mod:`importlib.resources` wherever it is installed (workflow/resources.py).
"""
