"""Installation qualification evidence: product, Python and package versions, the database
and its schema revision, the configuration in force (secrets masked) and checksums of the
shipped definitions and migrations. Every list is sorted."""

from __future__ import annotations

import hashlib
import platform
import re
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from workflow import config
from workflow.config import REPO_ROOT
from workflow.db import engines as db
from workflow.errors import ConfigError
from workflow.identity.policy import Policy
from workflow.resources import migrations_dir
from workflow.spec.load import DEFAULT_DEFINITIONS_DIR, load_directory
from workflow.validation.catalogue import Catalogue

#: a configuration value as shown in the report (one rule with `qms config show`)
mask = config.mask


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(65536), b""):
            h.update(block)
    return h.hexdigest()


def _checksums(root: Path, patterns: Iterable[str]) -> list[dict[str, str]]:
    files = sorted({p for pat in patterns for p in root.glob(pat) if p.is_file()})
    return [{"file": p.relative_to(REPO_ROOT).as_posix() if p.is_relative_to(REPO_ROOT)
             else p.name, "sha256": sha256_file(p)} for p in files]


def git_commit(root: Path = REPO_ROOT) -> dict[str, Any]:
    """HEAD and whether the work tree differs from it (a dirty tree is not a release)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root, capture_output=True, text=True, timeout=10,
                                check=True).stdout
        return {"commit": head, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown (not a git checkout)", "dirty": None}


def installed_packages() -> list[dict[str, str]]:
    """Every installed distribution and its version (importlib.metadata), sorted by name."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        seen.setdefault(key, dist.version)
    return [{"name": k, "version": seen[k]} for k in sorted(seen)]


def product_version() -> str:
    try:
        return metadata.version("qms-workflow")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def configuration() -> list[dict[str, str]]:
    """The configuration in force: the effective security policy (defaults included) and
    every QMS_ environment variable that is set, secrets masked."""
    rows: dict[str, dict[str, str]] = {}
    try:
        policy = Policy.from_settings(config.Settings.from_env())
        for k, v in sorted(vars(policy).items()):
            rows[f"policy.{k}"] = {"name": f"policy.{k}",
                                   "value": ",".join(v) if isinstance(v, tuple) else str(v),
                                   "source": "effective"}
    except ConfigError as exc:  # a malformed QMS_ variable: show it, do not stop the report
        rows["policy"] = {"name": "policy", "value": f"invalid: {exc}", "source": "effective"}
    env = config.qms_variables()
    if "QMS_DATABASE_URL" not in env:
        rows["QMS_DATABASE_URL"] = {"name": "QMS_DATABASE_URL", "source": "default",
                                    "value": "sqlite:///<QMS_INSTANCE_DIR>/qms.db"}
    if "QMS_SIGNATURE_KEY" not in env:
        rows["QMS_SIGNATURE_KEY"] = {"name": "QMS_SIGNATURE_KEY", "source": "default",
                                     "value": "(not set: key file QMS_SIGNATURE_KEY_FILE)"}
    for k in sorted(env):
        rows[k] = {"name": k, "value": mask(k, env[k]), "source": "environment"}
    return [rows[k] for k in sorted(rows)]


def database_facts(url: str | None = None) -> dict[str, Any]:
    """Engine, server version and schema revision (Alembic head of the code vs the database)."""
    facts: dict[str, Any] = {"alembic_head": db.head_revision()}
    url = url or db.default_database_url()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        # connecting would create an empty database file: report instead
        facts.update(url=parsed.render_as_string(hide_password=True), engine="sqlite",
                     server_version="SQLite (no database file)", current_revision=None,
                     error="the database file does not exist (run `qms init`)",
                     schema_status="database not reachable")
        return facts
    try:
        dbe = db.make_engine(url)
    except Exception as exc:
        facts.update(engine="unknown", error=f"{type(exc).__name__}: {exc}")
        return facts
    facts["url"] = dbe.url.render_as_string(hide_password=True)
    facts["engine"] = dbe.dialect.name
    try:
        with dbe.connect() as conn:
            if dbe.dialect.name == "sqlite":
                facts["server_version"] = "SQLite " + conn.execute(
                    text("select sqlite_version()")).scalar_one()
            else:
                facts["server_version"] = str(conn.execute(text("select version()")).scalar_one())
        facts["current_revision"] = db.current_revision(dbe)
    except Exception as exc:
        facts["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        facts.setdefault("current_revision", None)
    finally:
        dbe.dispose()
    cur, head = facts.get("current_revision"), facts["alembic_head"]
    facts["schema_status"] = ("database not reachable" if "error" in facts else
                              "not initialised" if cur is None else
                              "up to date" if cur == head else f"behind (code needs {head})")
    return facts


def gather_iq(database_url: str | None = None, catalogue: Catalogue | None = None
              ) -> dict[str, Any]:
    """Installation qualification evidence, every list sorted."""
    try:
        published = sorted((d.key, d.content_hash) for d in load_directory().values())
        defs = [{"key": k, "content_hash": h} for k, h in published]
    except Exception as exc:  # a broken shipped definition is IQ evidence too
        defs = [{"key": "(load failed)", "content_hash": f"{type(exc).__name__}: {exc}"}]
    iq: dict[str, Any] = {
        "product": {"name": "qms-workflow", "version": product_version(), **git_commit()},
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable,
                   "platform": platform.platform()},
        "packages": installed_packages(),
        "database": database_facts(database_url),
        "configuration": configuration(),
        "definition_files": _checksums(DEFAULT_DEFINITIONS_DIR, ["*.yaml", "*.json"]),
        "definition_hashes": defs,
        "migration_files": _checksums(migrations_dir(),
                                      ["versions/*.py", "env.py", "alembic.ini",
                                       "script.py.mako"]),
    }
    if catalogue is not None:
        iq["catalogue"] = {"file": _rel(catalogue.path), "sha256": catalogue.sha256}
    return iq


def _rel(path: str | Path) -> str:
    p = Path(path).resolve()
    return p.relative_to(REPO_ROOT).as_posix() if p.is_relative_to(REPO_ROOT) else p.name
