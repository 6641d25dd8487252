# ruff: noqa: E501  (the authorisation table is deliberately one route per line)
"""Who may open which page and post which form: every role against every route.

The table below is the specification. Each column is a user holding that one role only
(``none``: an account with no role; ``anon``: not logged in). Each row is a route against:

* ``CAPA``  a CAPA raised by someone else, open (its QA task unclaimed);
* ``HELD``  a CAPA whose QA task another QA holds (release / delegate by a non-holder);
* ``AR``    an access review: another workflow, other roles (system owner, ISMS, ...);
* ``FIRE``  a CAPA to assign (the POST moves it when allowed).

Cells: 200 the page; 403 refused (an action the user may not take); 404 the record (or
task) is hidden from the user, as if it did not exist; ``done`` redirected after the change
was made; ``refused`` redirected back with a message and nothing changed; ``login``
redirected to the login page. "Changed" means a new audit event was written.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.web.conftest import csrf, login
from workflow import clock
from workflow import tasks as wf_inbox
from workflow.db.models import AuditEvent, Record, Task, TaskStatus

ROLES = ("employee", "qa", "capa_owner", "process_owner", "system_owner", "isms",
         "access_admin", "trainer", "admin", "none", "anon")

# fmt: off
#  route                                    emp   qa    capa  po    so    isms  aa    trn   admin none  anon
MATRIX = [
    ("GET /",                               200,  200,  200,  200,  200,  200,  200,  200,  200,  200,  "login"),
    ("GET /records/new",                    200,  200,  200,  200,  200,  200,  200,  200,  200,  200,  "login"),
    ("GET /records/new/capa",               200,  200,  200,  403,  403,  403,  403,  403,  403,  403,  "login"),
    ("GET /records/new/nosuchflow",         404,  404,  404,  404,  404,  404,  404,  404,  404,  404,  "login"),
    ("GET /records/CAPA",                   200,  200,  200,  404,  404,  404,  404,  404,  404,  404,  "login"),
    ("GET /records/CAPA/audit",             200,  200,  200,  404,  404,  404,  404,  404,  404,  404,  "login"),
    ("GET /records/CAPA/do/assign",         403,  200,  403,  404,  404,  404,  404,  404,  404,  404,  "login"),
    ("GET /records/AR",                     404,  200,  404,  404,  200,  200,  200,  404,  404,  404,  "login"),
    ("GET /records/AR/do/attest",           404,  403,  404,  404,  200,  403,  403,  404,  404,  404,  "login"),
    ("GET /records/CAPA-2026-9999",         404,  404,  404,  404,  404,  404,  404,  404,  404,  404,  "login"),
    ("GET /tasks/HELD/delegate",            403,  403,  403,  404,  404,  404,  404,  404,  404,  404,  "login"),
    ("GET /audit/",                         403,  200,  403,  403,  403,  200,  403,  403,  200,  403,  "login"),
    ("GET /admin/users",                    403,  403,  403,  403,  403,  403,  403,  403,  200,  403,  "login"),
    ("GET /admin/users/creator",            403,  403,  403,  403,  403,  403,  403,  403,  200,  403,  "login"),
    ("GET /account/password",               200,  200,  200,  200,  200,  200,  200,  200,  200,  200,  "login"),
    ("GET /training",                       200,  200,  200,  200,  200,  200,  200,  200,  200,  200,  "login"),
    ("GET /account/profile",                200,  200,  200,  200,  200,  200,  200,  200,  200,  200,  "login"),
    ("POST /records/new/capa",              "done", "done", "done", 403, 403, 403, 403, 403, 403, 403, "login"),
    ("POST /records/FIRE/do/assign",        403,  "done", 403, 404, 404,  404,  404,  404,  404,  404,  "login"),
    ("POST /tasks/CAPA/claim",              "refused", "done", "refused", 404, 404, 404, 404, 404, 404, 404, "login"),
    ("POST /tasks/HELD/release",            "refused", "refused", "refused", 404, 404, 404, 404, 404, 404, 404, "login"),
    ("POST /admin/users/new",               403,  403,  403,  403,  403,  403,  403,  403,  "done", 403, "login"),
    ("POST /admin/users/creator/grant",     403,  403,  403,  403,  403,  403,  403,  403,  "done", 403, "login"),
    ("POST /admin/users/creator/action",    403,  403,  403,  403,  403,  403,  403,  403,  "done", 403, "login"),
]
# fmt: on

FORMS = {  # what each POST sends (besides the CSRF token)
    "/records/new/capa": {"title": "Matrix CAPA", "description": "d"},
    "/records/FIRE/do/assign": {"owner": "olga", "description": "d", "expected_version": "2"},
    "/tasks/CAPA/claim": {},
    "/tasks/HELD/release": {},
    "/admin/users/new": {"username": "newbie", "full_name": "New Bie", "timezone": "UTC",
                         "reason": "joined QA"},
    "/admin/users/creator/grant": {"role": "qa", "reason": "moved to QA"},
    "/admin/users/creator/action": {"action": "reset_password", "reason": "forgot it"},
}


def task_of(engine, number: str) -> int:
    with engine.reader() as s:
        return s.execute(select(Task.id).join(Record, Record.id == Task.record_id).where(
            Record.number == number, Task.status == TaskStatus.OPEN)).scalar_one()


def last_event(engine) -> int:
    with engine.reader() as s:
        return s.execute(select(func.max(AuditEvent.id))).scalar() or 0


@pytest.fixture
def world(engine, account):
    """The cast and the records of the table; returns the names the paths use."""
    account("creator", "employee")
    account("quinn", "qa", "employee")
    account("olga", "capa_owner", "employee")
    account("sam", "system_owner")
    capa = engine.start("capa", "creator", {"title": "Open CAPA", "description": "d"}).number
    held = engine.start("capa", "creator", {"title": "Held CAPA", "description": "d"}).number
    wf_inbox.claim(engine, task_of(engine, held), "quinn")
    fire = engine.start("capa", "creator", {"title": "To assign", "description": "d"}).number
    ar = engine.start("access_review", "sam", {"title": "Q1 review", "system": "QMS",
                                               "period": "2026-Q1"}).number
    return {"CAPA": capa, "HELD": held, "FIRE": fire, "AR": ar,
            "task:CAPA": str(task_of(engine, capa)), "task:HELD": str(task_of(engine, held))}


def concrete(path: str, world: dict[str, str]) -> str:
    parts = path.split("/")
    if parts[1] == "tasks":
        parts[2] = world[f"task:{parts[2]}"]
    return "/".join(world.get(p, p) for p in parts)


def user_client(app, account, role: str):
    client = app.test_client()
    if role == "anon":
        return client
    roles = () if role == "none" else (role,)
    account(f"u_{role}", *roles, totp=role == "admin")  # the test policy: admins use TOTP
    code = None
    if role == "admin":
        clock.advance(timedelta(seconds=30))
        code = account.totp["u_admin"].at(clock.now())
    r = login(client, f"u_{role}", totp=code)
    assert r.status_code == 302 and "/login" not in r.headers["Location"], role
    return client


def outcome(client, engine, method: str, path: str, token: str,
            fields: dict[str, str] | None) -> int | str:
    if method == "GET":
        r = client.get(path)
    else:
        before = last_event(engine)
        fields = fields or {}
        if "expected_version" in fields:
            number = path.split("/")[2]
            fields = {**fields, "expected_version": str(engine.get(number).version)}
        r = client.post(path, data={"csrf_token": token, **fields})
    if r.status_code != 302:
        return r.status_code
    if "/login" in r.headers["Location"]:
        return "login"
    if method == "GET":
        return f"302 to {r.headers['Location']}"
    return "done" if last_event(engine) > before else "refused"


@pytest.mark.parametrize("role", ROLES)
def test_authorisation_matrix(app, account, engine, world, role):
    """R-P11-10d-1 R-P11-10d-2 R-P11-10g-1 R-A11-12-1: every route checks authorisation on
    the server: pages need a login, a hidden record (or its task) answers 404 revealing
    nothing, a step or page the user's roles do not allow answers 403 (or is refused with a
    message) and changes nothing."""
    client = user_client(app, account, role)
    token = csrf(client, "/login" if role == "anon" else "/account/password")
    col = ROLES.index(role) + 1
    wrong = []
    for row in MATRIX:
        method, path = row[0].split(" ", 1)
        real = concrete(path, world)
        got = outcome(client, engine, method, real, token, FORMS.get(path))
        if got != row[col]:
            wrong.append(f"{row[0]} ({real}): expected {row[col]}, got {got}")
    assert not wrong, f"{role}:\n" + "\n".join(wrong)


def test_the_table_names_every_role_and_every_get_route_of_the_app(app):
    """The matrix keeps up with the app: every GET route of the blueprints this file covers
    appears in it (a new page needs a row)."""
    assert all(len(row) == len(ROLES) + 1 for row in MATRIX)
    covered = {row[0].split(" ", 1)[1].split("/")[1] for row in MATRIX}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] in ("inbox", "records", "audit", "admin") \
                and "GET" in rule.methods:
            first = rule.rule.split("/")[1]
            assert first in covered or rule.rule == "/", rule.rule


# --------------------------------------------------------------------------- output, errors,
# headers and cookies

XSS = "<script>alert(1)</script>"


def test_a_script_in_a_title_renders_as_text_everywhere(app, account, engine):
    """R-P11-30-1: a record title of <script> is escaped on the inbox, the record page, the
    transition form, the record's audit trail and the system-wide audit trail."""
    account("emma", "employee")
    account("quinn", "qa", "employee")
    number = engine.start("capa", "emma", {"title": XSS, "description": XSS}).number
    client = app.test_client()
    login(client, "quinn")
    for path in ("/", f"/?q={number}", f"/records/{number}", f"/records/{number}/do/assign",
                 f"/records/{number}/audit", f"/audit/?record={number}"):
        html = client.get(path).get_data(as_text=True)
        assert XSS not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path


@pytest.fixture
def failing_app(app):
    """The app with a test-only route that raises (never in production code), and errors
    handled as in production instead of propagated to the test."""

    @app.route("/_test/boom")
    def _boom():
        raise RuntimeError("secret internals: password=hunter2")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


def test_error_pages_show_no_traceback(failing_app, account, engine):
    """R-P11-30-1: 400, 403, 404, 409 and 500 answer with a page that names the problem and
    shows no traceback, exception or internals."""
    account("emma", "employee")
    account("quinn", "qa", "employee")
    account("olga", "capa_owner", "employee")
    number = engine.start("capa", "emma", {"title": "T", "description": "d"}).number
    client = failing_app.test_client()
    login(client, "quinn")
    path = f"/records/{number}/do/assign"
    token = csrf(client, path)
    stale = client.post(path, data={"csrf_token": token, "expected_version": "0",
                                    "owner": "olga"})
    pages = {
        400: client.post(path, data={"owner": "olga"}),  # no CSRF token
        403: client.get("/admin/users"),
        404: client.get("/records/CAPA-2026-9999"),
        409: stale,
        500: client.get("/_test/boom"),
    }
    for status, r in pages.items():
        html = r.get_data(as_text=True)
        assert r.status_code == status, (status, html[:300])
        for leak in ("Traceback", "File \"", "RuntimeError", "hunter2", "werkzeug",
                     "sqlalchemy", "site-packages"):
            assert leak not in html, (status, leak)
        assert "<html" in html and "Back to the inbox" in html or status == 409
    assert "Something went wrong" in pages[500].get_data(as_text=True)
    assert "changed while you were editing" in pages[409].get_data(as_text=True)
    assert engine.get(number).state == "open"


@pytest.mark.parametrize("path", ["/login", "/", "/records/CAPA-2026-9999", "/admin/users"])
def test_security_headers_on_every_answer(app, account, path):
    """R-P11-30-1: CSP (no inline script, no framing), X-Frame-Options, nosniff and a
    same-origin referrer policy, on pages, redirects and error pages alike."""
    account("emma", "employee")
    client = app.test_client()
    if path != "/login":
        login(client, "emma")
    r = client.get(path)
    csp = r.headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers.get("X-Frame-Options") == "DENY"
    assert r.headers.get("X-Content-Type-Options") == "nosniff"
    assert r.headers.get("Referrer-Policy") in ("same-origin", "no-referrer",
                                                "strict-origin-when-cross-origin")


def session_cookie(client, account) -> str:
    r = login(client, "emma")
    cookies = [v for k, v in r.headers.items() if k.lower() == "set-cookie"
               and v.startswith(("qms_session=", "__Host-qms_session="))]
    assert cookies, r.headers
    return cookies[-1]


def test_session_cookie_is_httponly_and_samesite_lax(app, account):
    """R-P11-30-1: the session cookie cannot be read by scripts nor sent cross-site; it is
    not marked Secure by default (``make run`` serves plain HTTP on 127.0.0.1)."""
    account("emma", "employee")
    cookie = session_cookie(app.test_client(), account)
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")}
    assert "httponly" in attrs and attrs.get("samesite") == "SameSite=Lax"
    assert "secure" not in attrs


def test_session_cookie_is_secure_when_configured(engine, account, tmp_path, monkeypatch):
    """R-P11-30-1 R-SEC-21: with QMS_COOKIE_SECURE=1 (behind HTTPS) the cookie is marked
    Secure and carries the __Host- prefix."""
    from tests.web.conftest import POLICY
    from webapp import create_app

    monkeypatch.setenv("QMS_COOKIE_SECURE", "1")
    monkeypatch.setenv("QMS_INSTANCE_DIR", str(tmp_path))
    secure_app = create_app({"TESTING": True, "SECRET_KEY": "test", "QMS_ENGINE": engine,
                             "QMS_POLICY": POLICY})
    account("emma", "employee")
    client = secure_app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"  # served over HTTPS
    cookie = session_cookie(client, account)
    assert cookie.startswith("__Host-qms_session=")
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"secure", "httponly", "samesite"} <= attrs
