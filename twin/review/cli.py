"""``twin review RUN_DIR [--baseline BASE_RUN] --out REVIEW_DIR``: the after-action review."""
from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "review", help="after-action review of a run with decisions (an exercise): review.json + review.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Review a finished run folder with decisions (an exercise, or a script that used\n"
        "Simulation.submit): the timeline of injects and decisions beside the KPI curves, the objectives\n"
        "(exercise.yaml) met or missed and when, the run against its baseline (the run without trainee\n"
        "decisions, computed unless --baseline is given), and the effect of each trainee decision from a\n"
        "counterfactual fork without it (forks run on Dask). Writes REVIEW_DIR/review.json, review.html\n"
        "and the forks under REVIEW_DIR/forks/.",
        epilog="example:\n  twin review runs/exercise-1 --out reviews/exercise-1")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the finished run folder to review")
    p.add_argument("--baseline", metavar="BASE_RUN", help="a finished run of the same city, grid and clock to "
                   "compare against (default: the run without its trainee decisions, computed)")
    p.add_argument("--out", required=True, metavar="REVIEW_DIR", help="folder for review.json, review.html, forks/")
    p.add_argument("--water-depth", type=float, default=0.1, metavar="M",
                   help="depth at home [m] that counts as 'the water' for evacuated-before-the-water (default 0.1)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler for the forks (default a LocalCluster)")
    p.add_argument("--workers", type=int, metavar="N", help="LocalCluster workers (default: forks, at most the cores)")
    p.add_argument("--serial", action="store_true", help="run the forks one after the other in this process")
    p.set_defaults(func=_cmd_review)


def _cmd_review(args) -> int:
    from twin.review.report import ReviewError, review_run

    if args.workers is not None and args.workers < 1:
        print(f"error: --workers {args.workers}: must be at least 1", file=sys.stderr)
        return 2
    try:
        rep = review_run(args.run_dir, args.out, baseline=args.baseline, scheduler=args.scheduler,
                         n_workers=args.workers, serial=args.serial, water_depth_m=args.water_depth,
                         log=lambda m: print(m, file=sys.stderr))
    except ReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    met = sum(o.status == "met" for o in rep.objectives)
    print(f"{args.out}/review.json, review.html: {sum(d.role == 'trainee' for d in rep.decisions)} trainee "
          f"decision(s), objectives met {met}/{len(rep.objectives)}, baseline {rep.baseline.origin}")
    if rep.noop_check.identical is False:
        print("error: the counterfactual fork with nothing left out differs from the run ("
              + "; ".join(rep.noop_check.differences[:3]) + "): the deltas are not trustworthy", file=sys.stderr)
        return 1
    return 0
