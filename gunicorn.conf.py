"""gunicorn reads this file from the working directory: the settings are in
webapp/gunicorn_conf.py (also usable as ``gunicorn -c python:webapp.gunicorn_conf`` from an
installed package)."""

from webapp.gunicorn_conf import *  # noqa: F403
