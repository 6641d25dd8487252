"""Instructions per engine step, counted by valgrind's callgrind: a figure that does not move
with the machine's load (wall and CPU time do: on a 2-core machine shared with other work they
varied by 20-40 % between runs of the same code).

Drives bench/engine.py's CAPA life (10 steps + the start = 11 units of work) on a fresh SQLite
file. Setup, five warm-up lives and a full garbage collection run uninstrumented; the objects
left are frozen (``gc.freeze``) so that a full collection falling inside the measured window
does not add millions of instructions to one run and not to another; then instrumentation is
switched on (``callgrind_control -i on``) around ``--n`` lives. Needs valgrind (Debian package
``valgrind``). Takes about 2 minutes for --n 20. Prints one JSON object on its last line.

    python bench/instructions.py --n 20

Reference (issue 18, this machine): 7.85 million instructions per unit at the start of the
session that added this script, 6.16 million after it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNITS_PER_LIFE = 11


def child(n: int, ready: Path, go: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from bench import engine as bench_engine

    tmp = tempfile.mkdtemp(prefix="qms-instr-")
    engine = bench_engine.setup(f"sqlite:///{tmp}/bench.db")
    for _ in range(5):
        bench_engine.life(engine)
    gc.collect()
    gc.freeze()
    ready.write_text(str(os.getpid()))
    while not go.exists():
        time.sleep(0.05)
    for _ in range(n):
        bench_engine.life(engine)
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="CAPA lives counted")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        d = Path(args.dir)
        child(args.n, d / "ready", d / "go")
        return
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="qms-callgrind-"))
    out = work / "callgrind.out"
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--child", "--n", str(args.n), "--dir", str(work)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = work / "ready"
    while not ready.exists():
        if proc.poll() is not None:
            raise SystemExit("the measured process ended before it was ready")
        time.sleep(0.5)
    pid = ready.read_text().strip()
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (work / "go").touch()
    if proc.wait() != 0:
        raise SystemExit(f"the measured process failed ({proc.returncode})")
    text = out.read_text(errors="replace")
    m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if m is None:
        raise SystemExit(f"no instruction total in {out}")
    total = int(m.group(1))
    units = args.n * UNITS_PER_LIFE
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"n": args.n, "units": units, "instructions": total,
                      "instructions_per_unit": round(total / units),
                      "load_average": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
