"""The deployment recipes of deploy/ (docs/deployment.md; issue 16, item 5; R-OPS-5): the
container image, the compose file and the systemd units start what the README documents.

.ci/run also runs ``docker compose config``, ``systemd-analyze verify`` and ``docker build``
where they are available; these checks run everywhere.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workflow.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
UNITS = DEPLOY / "systemd"


def readme_command() -> list[str]:
    """The production serving command of the README (*Production*, Serving)."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Production", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"\*\*Serving\*\*:.*?then `([^`]+)`", section, re.S)
    assert m, "the README's Production section names no serving command"
    return shlex.split(m.group(1))


def dockerfile_lines() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def final_stage() -> list[str]:
    lines = dockerfile_lines()
    starts = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    return lines[starts[-1]:]


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string((UNITS / name).read_text())
    return parser


def test_the_image_runs_the_readme_command_as_a_non_root_user() -> None:
    """R-OPS-5: the image's default command is the README's production command; the final
    stage installs the wheel (with PostgreSQL and gunicorn) on a slim Python image, runs as
    an unprivileged user, keeps its state in a volume and checks /healthz."""
    stage = final_stage()
    assert re.match(r"FROM python:3\.\d+-slim$", stage[0])
    [cmd] = [ln for ln in stage if ln.startswith("CMD ")]
    assert json.loads(cmd[4:]) == readme_command()
    assert not [ln for ln in stage if ln.startswith("ENTRYPOINT")]  # CMD alone: overridable
    [user] = [ln for ln in stage if ln.startswith("USER ")]
    assert user.split()[1] not in ("root", "0")
    assert stage.index(user) > max(i for i, ln in enumerate(stage) if ln.startswith("RUN "))
    assert any("[postgres,server]" in ln and ".whl" in ln for ln in stage)
    assert any("postgresql-client" in ln for ln in stage)  # pg_dump for qms backup
    assert any(ln.startswith("HEALTHCHECK") and "/healthz" in ln for ln in stage)
    assert any("QMS_INSTANCE_DIR=/var/lib/qms" in ln for ln in stage)
    assert any(ln.startswith("VOLUME") and "/var/lib/qms" in ln for ln in stage)
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".venv", "instance", ".git"} <= set(ignored)


def test_compose_runs_postgresql_web_scheduler_and_a_mail_catcher() -> None:
    """R-OPS-5: the compose file is valid YAML with the services db (PostgreSQL), init
    (``qms init`` with the schema owner's URL, once), web (the image's command), scheduler
    (``qms scheduler``) and mail (mailpit); web and scheduler connect as the runtime role,
    share the instance volume (keys) and start after init succeeded."""
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert set(services) == {"db", "init", "web", "scheduler", "mail"}
    assert services["db"]["image"].startswith("postgres:")
    assert "mailpit" in services["mail"]["image"]
    assert services["init"]["command"] == ["qms", "init"]
    assert services["scheduler"]["command"] == ["qms", "scheduler"]
    assert "command" not in services["web"]  # the image's CMD: the README's command
    for name in ("init", "web", "scheduler"):
        s = services[name]
        assert s["build"]["dockerfile"] == "deploy/Dockerfile" and s["image"] == "qms:latest"
        assert "qms-instance:/var/lib/qms" in s["volumes"]
        assert "qms_runtime:" in s["environment"]["QMS_DATABASE_URL"]
        assert s["environment"]["QMS_SMTP_URL"] == "smtp://mail:1025"
    assert "qms_owner:" in services["init"]["environment"]["QMS_MIGRATION_DATABASE_URL"]
    for name in ("web", "scheduler"):
        assert "QMS_MIGRATION_DATABASE_URL" not in services[name]["environment"]
        assert services[name]["depends_on"]["init"]["condition"] == \
            "service_completed_successfully"
    assert services["init"]["depends_on"]["db"]["condition"] == "service_healthy"
    # every variable compose requires is in the example environment file
    required = set(re.findall(r"\$\{(\w+):\?", (DEPLOY / "compose.yaml").read_text()))
    example = dict(ln.split("=", 1) for ln in (DEPLOY / "env.example").read_text().splitlines()
                   if ln and not ln.startswith("#"))
    assert required <= set(example), required - set(example)
    init = DEPLOY / "postgres-init.sh"
    assert os.access(init, os.X_OK)
    assert "CREATE ROLE qms_owner" in init.read_text() and "CREATE ROLE qms_runtime" in \
        init.read_text()


def test_systemd_units_start_the_documented_commands() -> None:
    """R-OPS-5: the units parse; the web unit runs the README's command, the scheduler unit
    ``qms scheduler``, the backup unit ``qms backup`` from the daily timer; all as the
    unprivileged user qms with the environment file, writing only the instance directory."""
    web, scheduler, backup = (unit(f"qms-{n}.service") for n in ("web", "scheduler", "backup"))
    timer = unit("qms-backup.timer")
    exe, *args = shlex.split(web["Service"]["ExecStart"])
    assert [Path(exe).name, *args] == readme_command()
    assert shlex.split(scheduler["Service"]["ExecStart"])[1:] == ["scheduler"]
    assert shlex.split(backup["Service"]["ExecStart"])[1:] == ["backup"]
    for u in (web, scheduler, backup):
        s = u["Service"]
        assert s["User"] == "qms" and s["WorkingDirectory"] == "/var/lib/qms"
        assert s["EnvironmentFile"].lstrip("-").startswith("/etc/qms/")  # the last one
        assert s["ProtectSystem"] == "strict" and s["ReadWritePaths"] == "/var/lib/qms"
        assert shlex.split(s["ExecStart"])[0].startswith("/opt/qms/venv/bin/")
    assert backup["Service"]["Type"] == "oneshot"
    assert web["Install"]["WantedBy"] == scheduler["Install"]["WantedBy"] == "multi-user.target"
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "yes"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    """R-OPS-5: ``systemd-analyze verify`` accepts every unit (the install path
    /opt/qms/venv replaced by this environment's, whose programs exist)."""
    bin_dir = Path(sys.executable).parent
    if not ((bin_dir / "qms").exists() and (bin_dir / "gunicorn").exists()):
        pytest.skip("qms and gunicorn are not installed beside this Python")
    for f in UNITS.iterdir():
        (tmp_path / f.name).write_text(f.read_text().replace("/opt/qms/venv/bin/", f"{bin_dir}/"))
    proc = subprocess.run(["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
