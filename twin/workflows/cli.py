"""``twin run``, ``twin fork``, ``twin replay``, ``twin compare``, ``twin ensemble``: scenarios from the command line."""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import sys
from pathlib import Path

__all__ = ["register", "one_line", "fail"]

_ALLOW_LARGE_HELP = ("run even when the memory estimate exceeds the machine's available memory "
                     "(same as TWIN_ALLOW_LARGE=1; see twin.memory)")

_SET_HELP = ("override a scenario key, e.g. --set flood.rain.peak_mm_per_h=80 --set interventions.0.crest_m=4.5 "
             "(value read as YAML; lists indexed by number; repeatable)")


def register(subparsers) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "run", help="run a scenario into a run folder", formatter_class=fmt,
        description="Run a scenario YAML (see scenarios/) and write a self-describing run folder:\n"
        "  manifest.json, scenario.yaml (as run), kpis.json, fields.nc, max_depth.tif, max_depth.png,\n"
        "  trips.parquet, people.parquet, incidents.parquet, links.parquet.\n"
        "A progress bar shows simulated time, speed (simulated s per wall s) and the ETA.\n"
        "Ctrl-C leaves a checkpoint; continue with `twin run --resume RUN_DIR`.",
        epilog="examples:\n  twin run scenarios/danang_rain.yaml\n"
        "  twin run scenarios/tamky_molave_2020.yaml --out runs/molave --set seed=7\n"
        "  twin run --resume runs/molave")
    p.add_argument("scenario", nargs="?", help="scenario YAML file (omit with --resume)")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<name>-<UTC timestamp>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its latest checkpoint")
    p.add_argument("--until", metavar="DURATION", help="stop early at this simulated time (e.g. 2h); resumable")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="print only the run folder")
    p.add_argument("--allow-large", action="store_true", help=_ALLOW_LARGE_HELP)
    p.add_argument("--check", action="store_true",
                   help="validate the scenario and its memory estimate, print them and stop (nothing is built or run)")
    p.set_defaults(func=_cmd_run)

    p = subparsers.add_parser(
        "fork", help="start a what-if from a run's state at a time", formatter_class=fmt,
        description="Fork a forecast/what-if: restore RUN's state at --at (latest checkpoint at or before it,\n"
        "then the original scenario up to --at), apply --set overrides, run to the end into a new folder.\n"
        "The decisions RUN received (API, dashboard, exercise seats and injects) that acted before --at act\n"
        "again as they did; those after --at only with --keep-decisions.",
        epilog="example:\n  twin fork runs/molave --at 6h --set interventions.0.crest_m=6 --out runs/molave-levee")
    p.add_argument("run_dir", metavar="RUN", help="the base run folder")
    p.add_argument("--at", required=True, metavar="TIME", help="fork time since start (e.g. 6h, 21600)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    p.add_argument("--out", metavar="DIR", help="new run folder (default RUN-fork-<at>)")
    p.add_argument("--keep-decisions", action="store_true",
                   help="also queue the decisions RUN received that acted at or after --at (default: the fork's "
                        "future has none of them)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--allow-large", action="store_true", help=_ALLOW_LARGE_HELP)
    p.set_defaults(func=_cmd_fork)

    p = subparsers.add_parser(
        "replay", help="re-run a run with its recorded decisions (bit-identical fields and KPIs)", formatter_class=fmt,
        description="Re-run RUN's scenario (scenario.yaml) with the decisions its decisions.parquet recorded\n"
        "(those submitted during the run: API, dashboard, exercise), each at the model time it acted.\n"
        "Same scenario, seed and decisions give the same fields.nc and kpis.json, bit for bit.",
        epilog="example:\n  twin replay runs/exercise-1 --out runs/exercise-1-replay")
    p.add_argument("run_dir", metavar="RUN", help="the run folder to replay")
    p.add_argument("--out", metavar="DIR", help="new run folder (default RUN-replay-<UTC timestamp>)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--quiet", action="store_true", help="print only the run folder")
    p.add_argument("--allow-large", action="store_true", help=_ALLOW_LARGE_HELP)
    p.set_defaults(func=_cmd_replay)

    p = subparsers.add_parser(
        "compare", help="compare two runs: KPI table with differences and a difference map", formatter_class=fmt,
        description="Print KPIs of RUN_A and RUN_B side by side with B - A, and write a map of\n"
        "max_depth(B) - max_depth(A) as PNG (and GeoTIFF) when the grids match.")
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--png", metavar="FILE", help="difference map (default RUN_B/compare_<A>.png)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--force", action="store_true",
                   help="compare runs of different cities anyway (a warning line says so)")
    _add_replicate_args(p)
    p.set_defaults(func=_cmd_compare)

    p = subparsers.add_parser(
        "ensemble", help="run an ensemble of members (Dask) and an exceedance-probability map", formatter_class=fmt,
        description="Run N members of a scenario, each with its own SeedSequence.spawn child and, with --vary,\n"
        "a parameter spread evenly over lo..hi (member i of N at lo + (hi - lo) * i / (N - 1)).\n"
        "Members run on a Dask LocalCluster by default or on the cluster at --scheduler.\n"
        "Writes DIR/member-XXX/ run folders, DIR/ensemble.json and DIR/exceedance.nc\n"
        "(probability that max depth exceeds each threshold) plus exceedance_<t>m.png.",
        epilog="example:\n  twin ensemble scenarios/danang_rain.yaml --members 8 --vary flood.rain.peak_mm_per_h=60..120")
    p.add_argument("scenario")
    p.add_argument("--members", type=int, required=True, metavar="N")
    p.add_argument("--vary", action="append", default=[], metavar="KEY=LO..HI",
                   help="spread a numeric key over the members (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler (tcp://host:port); default a LocalCluster")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes (default: cores)")
    p.add_argument("--serial", action="store_true", help="run members one after another in this process")
    p.add_argument("--thresholds", default="0.1,0.5,1.0", help="exceedance depths in m (comma separated)")
    p.add_argument("--out", metavar="DIR", help="ensemble folder (default runs/<name>-ensemble-<UTC timestamp>)")
    p.set_defaults(func=_cmd_ensemble)


def one_line(msg) -> str:
    """``msg`` (text or an exception) on one line: the lines of a multi-line message (a scenario's
    list of errors) joined with ``; `` (after a line ending in ``:`` with a space)."""
    text = str(msg)
    if not text.strip() and isinstance(msg, BaseException):
        text = type(msg).__name__
    out = ""
    for line in (ln.strip() for ln in text.splitlines()):
        if line:
            out = line if not out else (f"{out} {line}" if out.endswith(":") else f"{out}; {line}")
    return out


def fail(msg, code: int = 2) -> int:
    """Print ``error: <msg>`` on one line to stderr and return the exit code (2: bad input)."""
    print(f"error: {one_line(msg)}", file=sys.stderr)
    return code


@contextlib.contextmanager
def _allow_large(on: bool):
    """``--allow-large``: set ``TWIN_ALLOW_LARGE=1`` (read by ``twin.memory``) for the command only."""
    old = os.environ.get("TWIN_ALLOW_LARGE")
    if on:
        os.environ["TWIN_ALLOW_LARGE"] = "1"
    try:
        yield
    finally:
        if on:
            if old is None:
                os.environ.pop("TWIN_ALLOW_LARGE", None)
            else:
                os.environ["TWIN_ALLOW_LARGE"] = old


def _duration_arg(option: str, text: str) -> float:
    """A ``--until``/``--at`` value in seconds; ValueError naming the option and the value."""
    from twin.scenario import parse_duration

    try:
        v = parse_duration(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{option} {text!r}: {exc}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{option} {text!r}: expected a finite time since the start >= 0 s, got {v:g} s")
    return v


def _stamp() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _print_summary(sim, out_dir: Path, quiet: bool) -> None:
    from twin.output.kpis import format_table

    kp_path = out_dir / "kpis.json"
    if quiet:
        print(out_dir)
        return
    print(f"\n{sim.stop_reason}; wall time {sim.wall_time:,.1f} s "
          f"({sim.time / max(sim.wall_time, 1e-9):,.0f} simulated s per wall s)")
    ph = getattr(sim, "phase_wall_s", {})
    tot = sum(ph.values())
    if tot > 0:
        parts = sorted(ph.items(), key=lambda kv: -kv[1])
        print("wall time by phase: " + ", ".join(f"{k} {v:,.1f} s ({100 * v / tot:.0f} %)" for k, v in parts if v >= 0.005 * tot))
    if kp_path.exists():
        kp = json.loads(kp_path.read_text())
        print("\nKPIs")
        print(format_table(kp))
    print(f"\nrun folder: {out_dir}")
    for name in ("max_depth.tif", "fields.nc", "max_depth.png", "kpis.json", "scenario.yaml", "manifest.json"):
        if (out_dir / name).exists():
            print(f"  {out_dir / name}")


def _cmd_run(args) -> int:
    with _allow_large(getattr(args, "allow_large", False)):
        return _run(args)


def _run(args) -> int:
    from twin.build import build_twin
    from twin.scenario import ScenarioError, load_scenario
    from twin.simulation import NumericalInstability, Simulation

    stop = None
    if args.until is not None:
        try:
            stop = _duration_arg("--until", args.until)
        except ValueError as exc:
            return fail(exc)
        if stop <= 0:
            return fail(f"--until {args.until!r}: must be after the start (> 0 s)")
    if args.resume:
        if args.scenario or args.overrides:
            return fail("twin run --resume RUN_DIR takes no scenario and no --set (the run folder holds them)")
        from twin.workflows.runs import resume_run

        out = Path(args.resume)
        try:
            sim = resume_run(out, progress=not args.no_progress)
        except (FileNotFoundError, ValueError, OSError) as exc:
            return fail(exc)
        except NumericalInstability as exc:
            return fail(exc, 3)
        _print_summary(sim, out, args.quiet)
        sim.twin.close()
        return 0
    if not args.scenario:
        return fail("twin run: give a SCENARIO file (or --resume RUN_DIR)")
    try:
        sc = load_scenario(args.scenario, overrides=args.overrides)
    except ScenarioError as exc:
        return fail(exc)
    if getattr(args, "check", False):
        from twin.memory import check_memory

        try:
            est = check_memory(sc)
        except ValueError as exc:
            return fail(exc)
        grid = "grid unknown until the city loads" if est is None else (
            f"grid {est.shape[0]} x {est.shape[1]} cells of {sc.resolution_m:g} m, memory estimate "
            f"{est.total / 1024**3:,.2f} GiB")
        print(f"{args.scenario}: scenario {sc.name} is valid: {sc.n_steps} coupling steps of {sc.coupling_step:g} s, {grid}")
        return 0
    out = Path(args.out) if args.out else Path("runs") / f"{sc.name}-{_stamp()}"
    if not args.quiet:
        print(f"scenario {sc.name}: {sc.description.strip().splitlines()[0] if sc.description.strip() else ''}")
        print(f"start {sc.start.isoformat()} (local), duration {sc.duration / 3600:g} h, "
              f"coupling step {sc.coupling_step:g} s, seed {sc.seed}")
    try:
        twin = build_twin(sc)
    except (ValueError, OSError) as exc:
        return fail(exc)
    if not args.quiet:
        t = twin.terrain
        print(f"grid {t.shape[0]} x {t.shape[1]} cells of {t.cell_size:g} m; components: {', '.join(twin.component_names())}")
    try:
        sim = Simulation(twin, stop_time=sc.duration, out_dir=out, wall_time_limit=sc.outputs.wall_time_limit)
    except (ValueError, OSError) as exc:
        return fail(exc)
    if stop is not None:
        sim.add_callback("until", _until(stop))
    try:
        sim.run(progress=not (args.no_progress or args.quiet))
    except NumericalInstability as exc:
        return fail(exc, 3)
    finally:
        twin.close()  # the assimilator's store and Dask cluster, when it has them
    _print_summary(sim, out, args.quiet)
    return 0


def _until(stop_s: float):
    def cb(sim):
        if sim.time >= stop_s and not sim.finished:
            sim.running = False
            sim.stop_reason = f"stopped at --until {stop_s:g} s (resumable)"
    return cb


def _cmd_fork(args) -> int:
    from twin.scenario import ScenarioError
    from twin.simulation import NumericalInstability
    from twin.workflows.runs import fork_run

    try:
        at = _duration_arg("--at", args.at)
    except ValueError as exc:
        return fail(exc)
    out = Path(args.out) if args.out else Path(f"{args.run_dir.rstrip('/')}-fork-{int(at)}s")
    try:
        with _allow_large(args.allow_large):
            sim = fork_run(args.run_dir, at, args.overrides, out, progress=not args.no_progress,
                           later_decisions=args.keep_decisions)
    except (ScenarioError, ValueError, OSError) as exc:
        return fail(exc)
    except NumericalInstability as exc:
        return fail(exc, 3)
    _print_summary(sim, out, False)
    sim.twin.close()
    return 0


def _cmd_replay(args) -> int:
    from twin.scenario import ScenarioError
    from twin.simulation import NumericalInstability
    from twin.workflows.runs import replay_run

    out = Path(args.out) if args.out else Path(f"{args.run_dir.rstrip('/')}-replay-{_stamp()}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        return fail(f"{out}: the output folder exists and is not empty")
    try:
        with _allow_large(args.allow_large):
            sim = replay_run(args.run_dir, out, progress=not (args.no_progress or args.quiet))
    except (ScenarioError, ValueError, OSError) as exc:
        return fail(exc)
    except NumericalInstability as exc:
        return fail(exc, 3)
    _print_summary(sim, out, args.quiet)
    sim.twin.close()
    return 0


def _add_replicate_args(p) -> None:
    p.description += (
        "\n\nWith --replicates N, A and B are SCENARIO files (or run folders, whose scenario.yaml is read):\n"
        "both run N times with common seeds (replicate i of A and of B share seed i of\n"
        "SeedSequence(A.seed).spawn(N)), on a Dask LocalCluster by default, and each KPI's difference\n"
        "B - A gets a 90 % paired t-interval; 'noise' marks a difference the seed noise explains\n"
        "(its interval contains 0). Runs go to DIR/a/rep-XXX and DIR/b/rep-XXX.")
    p.epilog = ("examples:\n  twin compare runs/molave runs/molave-levee\n"
                "  twin compare scenarios/tamky_molave_2020.yaml scenarios/tamky_molave_levee.yaml --replicates 8 "
                "--out runs/levee-vs-base")
    p.add_argument("--replicates", type=int, metavar="N",
                   help="run both scenarios N times (N >= 2) with common seeds; intervals on the differences")
    p.add_argument("--out", metavar="DIR", help="with --replicates: folder of the replicate runs "
                   "(default runs/<A>-vs-<B>-<UTC timestamp>)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="with --replicates: Dask scheduler; default a LocalCluster")
    p.add_argument("--workers", type=int, default=None, help="with --replicates: LocalCluster worker processes")
    p.add_argument("--serial", action="store_true", help="with --replicates: run in this process, one after another")


def _cmd_compare_replicates(args) -> int:
    from twin.scenario import ScenarioError
    from twin.workflows.compare import _scenario_input, compare_replicates

    if args.replicates is None:
        print("error: --out, --scheduler, --workers and --serial go with --replicates N", file=sys.stderr)
        return 2
    from twin.simulation import NumericalInstability

    try:
        if args.replicates < 2:
            raise ValueError(f"--replicates {args.replicates}: must be >= 2 (an interval needs two paired differences)")
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers {args.workers}: must be >= 1")
        if args.png:
            raise ValueError("--png goes with two run folders, not with --replicates (no single difference map)")
        sa, sb = _scenario_input(args.run_a, "A"), _scenario_input(args.run_b, "B")
        out = Path(args.out) if args.out else Path("runs") / f"{sa.name}-vs-{sb.name}-{_stamp()}"
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"{out}: the output folder exists and is not empty")
        res = compare_replicates(sa, sb, args.replicates, out, scheduler=args.scheduler, n_workers=args.workers,
                                 serial=args.serial, progress=not args.json)
    except (ScenarioError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NumericalInstability as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k != "table"}, indent=2, default=str))
    else:
        print(res["table"])
        print(f"\nreplicate runs and compare_replicates.json: {res['out_dir']}")
    return 0


def _cmd_compare(args) -> int:
    from twin.workflows.compare import compare_runs

    if getattr(args, "replicates", None) is not None or getattr(args, "serial", False) or getattr(args, "out", None) \
            or getattr(args, "scheduler", None) or getattr(args, "workers", None) is not None:
        return _cmd_compare_replicates(args)
    try:
        res = compare_runs(args.run_a, args.run_b, png=args.png, force=getattr(args, "force", False))
    except (ValueError, OSError) as exc:
        return fail(exc)
    for w in res.get("warnings") or []:
        print(f"warning: {one_line(w)}", file=sys.stderr)
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print(res["table"])
        if res.get("png"):
            print(f"\ndifference map: {res['png']}")
    return 0


def _cmd_ensemble(args) -> int:
    from twin.scenario import ScenarioError, load_scenario
    from twin.workflows.ensemble import check_members, parse_thresholds, parse_vary, run_ensemble

    try:
        check_members(args.members)
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers {args.workers}: must be >= 1")
        thresholds = parse_thresholds(args.thresholds)
        vary = [parse_vary(v) for v in args.vary]
        sc = load_scenario(args.scenario, overrides=args.overrides)
    except (ScenarioError, ValueError) as exc:
        return fail(exc)
    out = Path(args.out) if args.out else Path("runs") / f"{sc.name}-ensemble-{_stamp()}"
    try:
        # every member's scenario is validated before any member runs (run_ensemble)
        res = run_ensemble(sc, args.members, out, vary=vary, scheduler=args.scheduler, n_workers=args.workers,
                           serial=args.serial, thresholds=thresholds, progress=True)
    except (ScenarioError, ValueError, OSError) as exc:
        return fail(exc)
    print(f"{len(res['members'])} members in {out}")
    for m in res["members"]:
        print(f"  member {m['member']:03d}: {m['overrides']} flooded max {m.get('flooded_area_max_m2', 0) / 1e6:.3f} km² "
              f"wall {m['wall_time_s']:.1f} s")
    print(f"exceedance probability: {out / 'exceedance.nc'}")
    return 0
