"""PostgreSQL role separation (21 CFR 11.10(c), (e); EU GMP Annex 11 §7, §12; R-SEC-42,
R-SEC-43): two roles instead of one.

- the **schema owner** (``QMS_MIGRATION_DATABASE_URL``) runs the migrations and owns every
  table, so it alone may alter them or drop their triggers;
- the **runtime role** (``QMS_DATABASE_URL``; its name ``QMS_RUNTIME_ROLE`` or that URL's
  user) is what the web, the API, the CLI and the scheduler connect as. It may read every
  table and change the mutable ones, but on the append-only tables (:data:`APPEND_ONLY`) it
  may only SELECT and INSERT: no UPDATE, DELETE or TRUNCATE, and, owning nothing, it cannot
  disable or drop their triggers.

:func:`grant_runtime` gives the runtime role exactly that (idempotent; ``qms db upgrade``
runs it after every migration, ``qms db grant-runtime ROLE`` by hand); :func:`check` reports
what a role can do and what is wrong with it (``qms db check-roles``, and verify-audit for the
role it runs as). SQLite has no roles: its protection is the triggers alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from workflow import config
from workflow.errors import WorkflowError

#: THE catalogue of append-only tables: rows are only ever inserted (the triggers of
#: migrations 0001/0008 refuse UPDATE, DELETE and TRUNCATE; the runtime role has no such
#: privilege on them). verify-audit's trigger check and the grants read this list.
APPEND_ONLY = ("audit_events", "signatures", "definition_versions")
#: what the runtime role may not do on an append-only table
FORBIDDEN = ("UPDATE", "DELETE", "TRUNCATE")
#: tables the runtime role only reads (the schema revision: migrations are the owner's)
READ_ONLY = ("alembic_version",)
#: the privileges reported per table
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


class RoleError(WorkflowError):
    """The runtime role cannot be set up as asked (missing, or the schema owner itself)."""

    code = "role_invalid"


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def runtime_role(settings: config.Settings | None = None) -> str | None:
    """The runtime role's name: ``QMS_RUNTIME_ROLE``, else the user of ``QMS_DATABASE_URL``
    when the migrations connect as another user (``QMS_MIGRATION_DATABASE_URL``), else None
    (one role for everything: ``qms db check-roles`` says what that allows)."""
    s = settings if settings is not None else config.settings()
    if s.runtime_role:
        return s.runtime_role
    if not s.database_url or not s.migration_database_url:
        return None
    runtime, owner = make_url(s.database_url), make_url(s.migration_database_url)
    if runtime.get_backend_name() != "postgresql" or not runtime.username:
        return None
    return runtime.username if runtime.username != owner.username else None


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def _role_exists(conn: Connection, role: str) -> bool:
    return conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"),
                        {"r": role}).first() is not None


def grant_runtime(conn: Connection, role: str) -> list[str]:
    """Give ``role`` what the runtime needs in the current schema and nothing more (in the
    caller's transaction, as the schema owner; idempotent). Returns the statements run.
    Refuses a role that does not exist or that owns the tables (it would keep every
    privilege whatever is revoked)."""
    if not is_postgres(conn):
        return []
    if not _role_exists(conn, role):
        raise RoleError(f"the runtime role {role!r} does not exist: create it first "
                        f"(CREATE ROLE {role} LOGIN PASSWORD '...'; docs/operations.md)")
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    owners = conn.execute(text(
        "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :s AND c.relname = ANY(:t)"), {"s": schema, "t": list(APPEND_ONLY)}
    ).scalars().all()
    if role in owners:
        raise RoleError(f"the runtime role {role!r} owns the tables (it ran the migrations): "
                        "the application needs a role of its own that owns nothing "
                        "(docs/operations.md)")
    r, s = _quote(conn, role), _quote(conn, schema)
    tables = ", ".join(_quote(conn, t) for t in APPEND_ONLY)
    statements = [
        f"GRANT USAGE ON SCHEMA {s} TO {r}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
        f"REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA {s} FROM {r}",
        f"REVOKE {', '.join(FORBIDDEN)} ON {tables} FROM {r}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r}",
    ]
    for t in READ_ONLY:
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": f"{schema}.{t}"}).scalar():
            statements.append(f"REVOKE INSERT, UPDATE, DELETE ON {_quote(conn, t)} FROM {r}")
    for statement in statements:
        conn.execute(text(statement))
    return statements


@dataclass
class RoleReport:
    """What a role can do in the current schema (:func:`check`)."""

    role: str
    schema: str
    exists: bool = True
    superuser: bool = False
    schema_owner: bool = False  # owns the schema or acts as its owner
    can_create: bool = False  # may create objects in the schema
    privileges: dict[str, set[str]] = field(default_factory=dict)  # table -> privileges
    owned: list[str] = field(default_factory=list)  # tables it owns or acts as owner of
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """The report for an operator (``qms db check-roles``)."""
        if not self.exists:
            return [f"role {self.role}: does not exist"]
        out = [f"role {self.role} in schema {self.schema}: "
               f"superuser {'YES' if self.superuser else 'no'}, "
               f"owns the schema {'YES' if self.schema_owner else 'no'}, "
               f"may create objects in it {'yes' if self.can_create else 'no'}"]
        for table in APPEND_ONLY:
            privs = self.privileges.get(table, set())
            shown = " ".join(p for p in PRIVILEGES if p in privs) or "none"
            bad = [p for p in FORBIDDEN if p in privs] + \
                (["owner"] if table in self.owned else [])
            out.append(f"  append-only {table:20} {shown:40} "
                       f"{'NOT OK (' + ', '.join(bad) + ')' if bad else 'OK'}")
        others = sorted(t for t in self.privileges if t not in APPEND_ONLY)
        writable = [t for t in others if {"UPDATE", "DELETE"} & self.privileges[t]]
        out.append(f"  other tables: {len(others)}, of which it may change {len(writable)}; "
                   f"owns {len([t for t in self.owned if t not in APPEND_ONLY])}")
        return out


def check(conn: Connection, role: str | None = None) -> RoleReport:
    """What ``role`` (default: the role this connection acts as, ``current_user``) can do
    in the current schema, and its problems as the runtime role: a superuser, the owner of
    the schema or of an append-only table (or a member of that owner), or UPDATE, DELETE or
    TRUNCATE on an append-only table. PostgreSQL only."""
    role = role or conn.execute(text("SELECT current_user")).scalar_one()
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    report = RoleReport(role, schema)
    attrs = conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = :r"),
                         {"r": role}).first()
    if attrs is None:
        report.exists = False
        report.problems.append(f"role {role} does not exist")
        return report
    report.superuser = bool(attrs.rolsuper)
    ns = conn.execute(text(
        "SELECT pg_has_role(:r, nspowner, 'MEMBER') AS owner, "
        "has_schema_privilege(:r, oid, 'CREATE') AS can_create "
        "FROM pg_namespace WHERE nspname = :s"), {"r": role, "s": schema}).one()
    report.schema_owner, report.can_create = bool(ns.owner), bool(ns.can_create)
    checks = ", ".join(f"has_table_privilege(:r, c.oid, '{p}') AS {p.lower()}"
                       for p in PRIVILEGES)
    rows = conn.execute(text(
        f"SELECT c.relname, pg_has_role(:r, c.relowner, 'MEMBER') AS owner, "
        f"pg_get_userbyid(c.relowner) AS owner_name, {checks} FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :s AND c.relkind IN ('r', 'p') ORDER BY c.relname"),
        {"r": role, "s": schema}).all()
    owners: dict[str, str] = {}
    for row in rows:
        m = row._mapping
        report.privileges[row.relname] = {p for p in PRIVILEGES if m[p.lower()]}
        if row.owner:
            report.owned.append(row.relname)
            owners[row.relname] = row.owner_name
    if report.superuser:
        report.problems.append(f"{role} is a superuser: it can disable or drop the append-only "
                               "triggers and change anything")
    if report.schema_owner:
        report.problems.append(f"{role} owns the schema {schema} (or is a member of its owner): "
                               "it can drop the append-only tables")
    for table in APPEND_ONLY:
        if table not in report.privileges:
            report.problems.append(f"the append-only table {table} is missing from schema "
                                   f"{schema}")
            continue
        if table in report.owned and not report.superuser:
            how = "owns" if owners[table] == role else f"is a member of {owners[table]}, which owns"
            report.problems.append(f"{role} {how} {table}: it can disable or drop its "
                                   "append-only trigger")
        bad = [p for p in FORBIDDEN if p in report.privileges[table]]
        if bad and not report.superuser:
            report.problems.append(f"{role} may {', '.join(bad)} on the append-only table "
                                   f"{table}")
    return report
