"""The mypy error count of ``twin`` is a ceiling that may only go down.

    python tools/mypy_ceiling.py            # run mypy, print the count, exit 1 if above the ceiling
    python tools/mypy_ceiling.py --update   # same, and lower tools/mypy_ceiling.txt to the count
    python tools/mypy_ceiling.py --reset    # record today's count whatever it is (see below)

mypy runs with the settings of ``[tool.mypy]`` in pyproject.toml (``files = ["twin"]``) under this
interpreter (``python -m mypy``); ``--python-executable PY`` lets a mypy installed elsewhere check
against the packages of the project's environment PY. ``--update`` never raises the stored number.

Re-measuring after a merge: other branches restructure modules in parallel, so the count on the
merged tree differs from each branch's. After merging, the lead runs ONE command,
``python tools/mypy_ceiling.py --reset`` (or ``make typecheck-reset``), and commits
tools/mypy_ceiling.txt. ``--reset`` is for that moment only; everywhere else the number goes down.

Exit codes: 0 at or below the ceiling, 1 above it (or ``--update`` asked to raise it), 2 when mypy
itself failed (crash, bad configuration): a failed run is never counted as zero errors.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CEILING_FILE = Path(__file__).with_name("mypy_ceiling.txt")
SUMMARY_ERRORS = re.compile(r"^Found (\d+) errors? in \d+ files? \(checked \d+ source files?\)$", re.M)
SUMMARY_OK = re.compile(r"^Success: no issues found in \d+ source files?$", re.M)


def read_ceiling(path: Path | None = None) -> int:
    """The stored ceiling: the first line that is not blank or a ``#`` comment, an integer >= 0."""
    path = path or CEILING_FILE
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            try:
                value = int(line)
            except ValueError:
                raise SystemExit(f"{path}: expected the number of mypy errors, got {line!r}") from None
            if value < 0:
                raise SystemExit(f"{path}: the ceiling must be >= 0, got {value}")
            return value
    raise SystemExit(f"{path}: no ceiling number found")


def write_ceiling(value: int, path: Path | None = None) -> None:
    path = path or CEILING_FILE
    path.write_text("# mypy errors in `mypy twin`: may only go down (tools/mypy_ceiling.py --update)\n"
                    f"{value}\n", encoding="utf-8")


def count_errors(output: str, returncode: int) -> int:
    """Number of errors from mypy's summary line; a crash or a run without a summary raises."""
    m = SUMMARY_ERRORS.search(output)
    if m and returncode == 1:
        return int(m.group(1))
    if SUMMARY_OK.search(output) and returncode == 0:
        return 0
    raise RuntimeError(f"mypy did not finish normally (exit {returncode}); its last output:\n{output[-3000:]}")


def run_mypy(python_executable: str | None = None) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "mypy"]
    if python_executable:
        cmd += ["--python-executable", python_executable]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    return count_errors(output, proc.returncode), output


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--update", action="store_true", help="lower the stored ceiling to today's count")
    mode.add_argument("--reset", action="store_true",
                      help="store today's count even if higher (the lead, once, after merging branches)")
    ap.add_argument("--python-executable", help="check against this interpreter's installed packages")
    ap.add_argument("-v", "--verbose", action="store_true", help="print mypy's full report")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    try:
        count, output = run_mypy(args.python_executable)
    except RuntimeError as exc:
        print(f"mypy_ceiling: {exc}", file=sys.stderr)
        return 2
    ceiling = read_ceiling() if CEILING_FILE.exists() else None
    print(f"mypy: {count} errors (ceiling {ceiling if ceiling is not None else 'unset'}, "
          f"{time.perf_counter() - t0:.0f} s)")
    if args.verbose:
        print(output, end="")

    if args.reset or ceiling is None:
        write_ceiling(count)
        print(f"mypy_ceiling: stored {count} in {CEILING_FILE.relative_to(REPO)}")
        return 0
    if count > ceiling:
        print(output, end="", file=sys.stderr)
        print(f"mypy_ceiling: {count} errors is above the ceiling {ceiling} "
              f"({CEILING_FILE.relative_to(REPO)}): fix the new errors listed above", file=sys.stderr)
        return 1
    if args.update and count < ceiling:
        write_ceiling(count)
        print(f"mypy_ceiling: lowered the ceiling {ceiling} -> {count}")
    elif count < ceiling:
        print(f"mypy_ceiling: below the ceiling; run with --update to lower it to {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
