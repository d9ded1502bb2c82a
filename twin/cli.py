"""The ``twin`` command line.

Each area registers its own subcommands from its own module (``register(subparsers)``), so this
file only assembles them: ``twin run/compare/ensemble/fork`` (twin.workflows.cli), ``twin city``
(twin.city.cli), ``twin sensors`` and ``twin live`` (twin.sensors.cli), ``twin serve``
(twin.dashboard.cli).
"""
from __future__ import annotations

import argparse
import importlib
import sys

import twin

# modules that provide register(subparsers)
_SUBCOMMAND_MODULES = [
    "twin.workflows.cli",
    "twin.city.cli",
    "twin.sensors.cli",
    "twin.dashboard.cli",
    "twin.exercise.cli",
    "twin.review.cli",
    "twin.forecast.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twin",
        description="Tam Kỳ Twin: run what-if flood, traffic, people and emergency-service scenarios "
        "for Tam Kỳ, compare runs, ingest sensor feeds and serve the dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"tamky-twin {twin.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an area not built yet in this checkout
            if exc.name is None or not name.startswith(exc.name):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from twin.memory import retain_freed_memory

    retain_freed_memory()  # the grid-sized arrays of each coupling step reuse freed memory (TWIN_MALLOC=system: not)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    # the last line of defence: bad input that a command did not report itself (ScenarioError,
    # DecisionError, CheckpointError and the project's other errors are ValueErrors; a missing or
    # unreadable file an OSError) is one line and exit code 2, never a traceback
    except (ValueError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory (a finer resolution_m than this machine can hold? see twin.memory)",
              file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    """The message on one line (as twin.workflows.cli.one_line): lines joined with ``; ``."""
    out = ""
    for line in (ln.strip() for ln in str(exc).splitlines()):
        if line:
            out = line if not out else (f"{out} {line}" if out.endswith(":") else f"{out}; {line}")
    return out or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
