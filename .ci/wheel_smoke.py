"""The installed wheel as a new operator uses it (issue 16; R-OPS-1, R-OPS-2).

Run by .ci/run with the fresh virtual environment's Python, from an empty directory outside
the checkout, with no ``QMS_`` variable set: the default instance directory (``./instance``
of the working directory) is used, so this also checks that nothing is written into the
installed packages. Exits non-zero, naming the step, on the first failure.

Steps: ``qms init`` publishes every shipped workflow; ``qms jobs validate`` reads the shipped
schedules; a user is created and logs in through the web application (Flask test client, the
real app factory); the editor's vendored CodeMirror is served; ``qms definitions validate``
accepts a shipped definition copied out of the package; ``qms verify-audit`` passes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

PASSWORD = "Wheel-Check-Passw0rd-2026"


def fail(step: str, detail: str) -> None:
    sys.exit(f"wheel check FAILED at {step}: {detail}")


def qms(*args: str, stdin: str | None = None) -> str:
    exe = Path(sys.executable).with_name("qms")
    proc = subprocess.run([str(exe), *args], input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"qms {' '.join(args)}", f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def main() -> None:
    run = Path.cwd()
    site = Path(sysconfig.get_paths()["purelib"])
    if any(k.startswith("QMS_") for k in os.environ):
        fail("environment", "run without QMS_ variables (the defaults are what is checked)")
    import definitions  # the installed package, not a checkout

    shipped_dir = Path(definitions.__file__).parent
    if not shipped_dir.is_relative_to(site):
        fail("install", f"definitions imported from {shipped_dir}, not from {site}")
    shipped = sorted(p.stem for p in shipped_dir.glob("*.yaml"))
    if len(shipped) < 5:
        fail("install", f"the wheel carries {len(shipped)} definitions: {shipped}")

    out = qms("init")
    published = re.findall(r"^\s+(\w+): version \d+ published", out, re.M)
    if sorted(published) != shipped:
        fail("qms init", f"published {published}, shipped {shipped}\n{out}")
    print(f"qms init: published {len(published)} workflows: {', '.join(published)}")
    if not (run / "instance" / "signature.key").is_file():
        fail("qms init", "no signature key in ./instance")
    print(qms("jobs", "validate").strip())

    qms("users", "create", "wendy", "--name", "Wendy Wheel", "--role", "employee",
        "--password-stdin", "--reason", "wheel check", stdin=PASSWORD + "\n")
    from webapp import create_app

    app = create_app()
    client = app.test_client()
    page = client.get("/login")
    token = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page.data)
    if page.status_code != 200 or token is None:
        fail("login page", f"status {page.status_code}")
    answer = client.post("/login", data={"csrf_token": token.group(1).decode(),
                                         "username": "wendy", "password": PASSWORD})
    where = answer.headers.get("Location", "")
    if answer.status_code != 302 or "/login" in where:
        fail("login", f"status {answer.status_code}, to {where!r}")
    # an administrator's initial password is temporary: the first page is the change form
    landed = client.get(where, follow_redirects=True)
    if landed.status_code != 200 or b"Wendy Wheel" not in landed.data:
        fail("login", f"after login {where} answered {landed.status_code}")
    print(f"login: wendy signed in, landed on {landed.request.path}")
    editor = client.get("/static/vendor/codemirror/codemirror.js")
    if editor.status_code != 200 or len(editor.data) < 1000:
        fail("static", f"vendored CodeMirror answered {editor.status_code}")
    editor.close()

    copy = run / "deviation.yaml"
    shutil.copyfile(shipped_dir / "deviation.yaml", copy)
    print(qms("definitions", "validate", str(copy)).strip())
    print(qms("verify-audit").strip().splitlines()[-1])

    written = [p for p in site.rglob("*") if p.name in ("instance", "signature.key",
                                                         "anchor.key", "qms.db")]
    if written:
        fail("site-packages", f"a command wrote into the installed packages: {written}")
    print("wheel check OK")


if __name__ == "__main__":
    main()
