"""Parallel bulk load of the clones for bench/datagen.py on SQLite (a million records in
minutes, not hours).

The sequential path hashes ~10 audit events a record in one process and inserts them through
SQLAlchemy into a database whose secondary indexes grow with every batch: 70-400 records/s,
falling as the indexes outgrow the cache. Here:

1. an allocation pass walks the clones in creation order and notes where each chunk of
   clones starts (next ids of every table, the record counters): cheap, no hashing;
2. worker processes (fork) build their chunks with the same :func:`bench.datagen.clone` -
   the same rows, chains, signatures and seals as the sequential path - and write them with
   the driver's ``executemany`` (values converted by SQLAlchemy's own bind processors, so
   the stored text is what the ORM writes) into a scratch SQLite file each, without indexes;
3. the main process drops the secondary indexes of the bulky tables of the real database,
   copies the chunk files in order with ``INSERT ... SELECT`` (the record search and record
   people triggers still fire for every record), and builds the indexes again once.

The scratch files are throwaway intermediate files, written without a journal; the real
database is written with its own settings in one transaction.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.schema import CreateTable

#: filled by the parent before the workers fork: what each chunk needs (never pickled)
_JOB: dict[str, Any] = {}


def _advance(ids: Any, g: dict[str, Any], shift: Any, extra: int) -> str:
    """Move ``ids`` past one clone of template group ``g`` as :func:`clone` would; the
    clone's root record number."""
    first = ""
    for r in g["records"]:
        ids.record += 1
        prefix, _year, _n = r["number"].rsplit("-", 2)
        number = ids.number(prefix, (r["created_at"] + shift).year)
        first = first or number
    events = [e for evs in g["events"].values() for e in evs]
    ids.event += len(events) + extra
    ids.sig += sum(1 for e in events if e["action"] == "sign")
    ids.task += len(g["tasks"])
    ids.timer += len(g["timers"])
    ids.link += len(g["links"])
    return first


def _columns(tables: tuple[tuple[str, Any], ...], dialect: Any
             ) -> dict[str, tuple[str, list[str], list[Any]]]:
    out = {}
    for key, model in tables:
        cols = list(model.__table__.columns)
        out[key] = (model.__table__.name, [c.name for c in cols],
                    [c.type._cached_bind_processor(dialect) for c in cols])
    return out


def _chunk(k: int) -> str:
    """Worker: build chunk ``k`` into its scratch file; returns the file's path."""
    from bench.datagen import clone

    j = _JOB
    start, stop = j["bounds"][k]
    ids = j["snapshots"][k]
    path = os.path.join(j["scratch"], f"chunk{k:03d}.db")
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    for ddl in j["ddl"]:
        con.execute(ddl)
    cols = j["columns"]
    con.execute("BEGIN")
    buf: dict[str, list[tuple[Any, ...]]] = {k2: [] for k2 in cols}

    def flush() -> None:
        for key, rows in buf.items():
            if rows:
                table, names, _procs = cols[key]
                con.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES "
                                f"({', '.join('?' * len(names))})", rows)
                rows.clear()

    n = 0
    for pos in range(start, stop):
        i = j["order"][pos]
        kind, v, names = j["plan"][i]
        rows = clone(j["templates"][kind][v], ids, created_at=j["when"][i],
                      title=j["titles"][pos], users=j["users"], names=names,
                      full_names=j["full_names"], extra_updates=j["extra"][i])
        for key, (_t, cnames, procs) in cols.items():
            out = buf[key]
            for row in rows[key]:
                out.append(tuple(p(row[c]) if p else row[c]
                                 for c, p in zip(cnames, procs, strict=True)))
        n += len(rows["records"])
        if len(buf["events"]) > 50_000:
            flush()
    flush()
    con.execute("COMMIT")
    con.close()
    return path


def load(engine: Any, *, templates: dict[str, Any], plan: list[Any], when: list[Any],
         order: list[int], extra: list[int], titles: list[str], users: dict[str, int],
         full_names: dict[int, str], ids: Any, tables: tuple[tuple[str, Any], ...],
         workers: int | None = None, log: Callable[[str], None] | None = None
         ) -> tuple[dict[int, str], Any]:
    """Write every clone of ``plan`` (in ``order``) into the SQLite database of ``engine``.
    Returns the root record number of each clone (by plan index) and the final ids."""
    import time

    workers = workers or max(1, min(4, os.cpu_count() or 1))
    numbers: dict[int, str] = {}
    nchunks = max(workers * 4, 1)
    size = -(-len(order) // nchunks) if order else 1
    bounds, snapshots = [], []
    for c0 in range(0, len(order), size):
        bounds.append((c0, min(len(order), c0 + size)))
        snapshots.append(copy.deepcopy(ids))
        for pos in range(c0, min(len(order), c0 + size)):
            i = order[pos]
            kind, v, _names = plan[i]
            g = templates[kind][v]
            numbers[i] = _advance(ids, g, when[i] - g["records"][0]["created_at"], extra[i])
    dialect = engine.dialect
    scratch = tempfile.mkdtemp(prefix="qms-bulk-",
                               dir=os.path.dirname(engine.url.database) or None)
    meta_tables = [m.__table__ for _k, m in tables]
    ddl = [str(CreateTable(t).compile(dialect=create_engine("sqlite://").dialect))
           for t in meta_tables]
    _JOB.update(templates=templates, plan=plan, when=when, order=order, extra=extra,
                titles=titles, users=users, full_names=full_names, bounds=bounds,
                snapshots=snapshots, scratch=scratch, ddl=ddl,
                columns=_columns(tables, dialect))
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("fork")
    files = []
    with ctx.Pool(workers) as pool:
        for k, path in enumerate(pool.imap(_chunk, range(len(bounds)))):
            files.append(path)
            if log:
                done = bounds[k][1]
                log(f"built {done}/{len(order)} clones "
                    f"({done / (time.perf_counter() - t0):.0f} clones/s)")
    _JOB.clear()
    _merge(engine.url.database, files, [(t.name, [c.name for c in t.columns])
                                        for t in meta_tables], log)
    for p in files:
        Path(p).unlink()
    Path(scratch).rmdir()
    return numbers, ids


def _merge(db_path: str, files: list[str], tables: list[tuple[str, list[str]]],
           log: Callable[[str], None] | None) -> None:
    """Copy the chunk files into the database, secondary indexes dropped and rebuilt."""
    import time

    con = sqlite3.connect(db_path, isolation_level=None, timeout=60)
    con.execute("PRAGMA foreign_keys=OFF")  # the rows reference each other across chunks
    con.execute("PRAGMA cache_size=-400000")
    names = [t for t, _c in tables]
    indexes = con.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND "
        f"tbl_name IN ({', '.join('?' * len(names))})", names).fetchall()
    t0 = time.perf_counter()
    con.execute("BEGIN IMMEDIATE")
    for name, _sql in indexes:
        con.execute(f'DROP INDEX "{name}"')
    for k, path in enumerate(files):
        con.execute("ATTACH ? AS chunk", (path,))
        for table, cols in tables:
            cl = ", ".join(f'"{c}"' for c in cols)
            con.execute(f"INSERT INTO main.{table} ({cl}) SELECT {cl} FROM chunk.{table} "
                        "ORDER BY id")
        con.execute("COMMIT")
        con.execute("DETACH chunk")
        con.execute("BEGIN IMMEDIATE")
        if log:
            log(f"merged chunk {k + 1}/{len(files)} ({time.perf_counter() - t0:.0f} s)")
    for name, sql in indexes:
        con.execute(sql)
        if log:
            log(f"index {name} built ({time.perf_counter() - t0:.0f} s)")
    con.execute("COMMIT")
    con.close()
