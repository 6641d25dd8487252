"""mypy on workflow/ against a baseline that may only shrink.

Runs mypy with the [tool.mypy] settings of pyproject.toml. workflow.spec and workflow.engine are
strict and must have no error at all. Every other error must be in .ci/mypy-baseline.txt, one
line per error without its line number (``path: message  [code]``; an error that occurs twice
is listed twice), so that editing a file does not invalidate the baseline. A new error fails;
baseline entries that no longer occur are counted and may be dropped with ``--update`` (which
also accepts errors that only moved to another file with their module, never more of them).

    python .ci/mypy_check.py            # check (exit 1 on a new error)
    python .ci/mypy_check.py --update   # rewrite the baseline; refused while there are new errors

(mypy also reports errors in what workflow/ imports from notifications/; they are held the same way.)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / ".ci" / "mypy-baseline.txt"
STRICT = ("workflow/spec/", "workflow/engine/")
ERROR = re.compile(r"^(?P<path>[^:\s]+\.pyi?):(?P<line>\d+)(?::\d+)?: error: (?P<message>.*)$")
HEADER = (
    "# mypy errors in workflow/ accepted for now, one per line, without line numbers.\n"
    "# Written by `python .ci/mypy_check.py --update`; it may only shrink (workflow.spec and\n"
    "# workflow.engine are strict and may not appear here).\n"
)


def run_mypy() -> list[str]:
    """The normalised error lines of one mypy run (configuration from pyproject.toml)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--no-pretty", "--no-color-output"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if proc.returncode not in (0, 1) or proc.stderr.strip():
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"mypy did not run (exit {proc.returncode})")
    errors = []
    for line in proc.stdout.splitlines():
        m = ERROR.match(line)
        if m:
            errors.append(f"{m['path'].replace(chr(92), '/')}: {m['message']}")
        elif ": error:" in line:  # an error line we cannot parse must not pass silently
            raise SystemExit(f"cannot parse mypy output: {line}")
    return errors


def read_baseline() -> Counter[str]:
    if not BASELINE.exists():
        return Counter()
    lines = BASELINE.read_text(encoding="utf-8").splitlines()
    return Counter(line for line in lines if line.strip() and not line.startswith("#"))


def messages(errors: Counter[str]) -> Counter[str]:
    """The errors without their paths."""
    counts: Counter[str] = Counter()
    for error, n in errors.items():
        counts[error.split(": ", 1)[1]] += n
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite the baseline (shrink only)")
    args = parser.parse_args(argv)

    current = Counter(run_mypy())
    baseline = read_baseline()
    strict_errors = sorted(e for e in current.elements() if e.startswith(STRICT))
    strict_baselined = sorted(e for e in baseline if e.startswith(STRICT))
    new = current - baseline
    gone = baseline - current
    total = sum(current.values())

    for e in strict_errors:
        print(f"strict package: {e}")
    for e in strict_baselined:
        print(f"strict package in the baseline (not allowed): {e}")
    for e in sorted(new.elements()):
        if not e.startswith(STRICT):
            print(f"new: {e}")
    print(f"mypy: {total} errors (strict workflow.spec + workflow.engine: "
          f"{len(strict_errors)}); baseline {sum(baseline.values())} entries, "
          f"{sum(new.values())} new, {sum(gone.values())} gone")
    failed = bool(new or strict_errors or strict_baselined)

    if args.update:
        # a module moved or split carries its errors to a new path: accepted, as long as no
        # message occurs more often than before
        grown = messages(current) - messages(baseline)
        if strict_errors or (grown and BASELINE.exists()):
            for e in sorted(grown.elements()):
                print(f"more often than in the baseline: {e}")
            print("baseline NOT updated: fix the new errors first (the baseline may only shrink)")
            return 1
        body = "".join(f"{e}\n" for e in sorted(current.elements()))
        BASELINE.write_text(HEADER + body, encoding="utf-8")
        print(f"baseline rewritten: {total} entries")
        return 0
    if new and not (messages(new) - messages(gone)):
        print("every new error is a moved one (same message, other path): "
              "run `python .ci/mypy_check.py --update`")
    if gone and not failed:
        print(f"{sum(gone.values())} baseline entries are fixed: "
              "run `python .ci/mypy_check.py --update` to drop them")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
