"""``twin serve``: start the dashboard on 127.0.0.1."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="start the dashboard (Map, Scenario builder, Compare, Sensors, Emergency) on 127.0.0.1",
        description="Start the Tam Kỳ Twin dashboard, a local web app over the run folders in --runs. It works "
        "offline (all scripts served locally) and listens on 127.0.0.1 only.")
    p.add_argument("--runs", default="runs", type=Path, help="folder holding run folders (default: runs)")
    p.add_argument("--port", default=8050, type=int, help="port on 127.0.0.1 (default: 8050)")
    p.add_argument("--store", default=None, type=Path, help="DuckDB sensor store for the Sensors page")
    p.add_argument("--scenarios", default=None, type=Path,
                   help="folder of base scenarios for the builder (default: the repository's scenarios/)")
    p.add_argument("--refresh", default=10.0, type=float, help="live refresh interval of the Sensors page in s")
    p.add_argument("--debug", action="store_true", help="Dash debug mode (reloader off)")
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    import os

    # read fields.nc while a live twin appends to it (HDF5 file locks would refuse the reader)
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    try:
        from .app import create_app
    except ImportError as exc:      # a base install: dash and plotly come with the [dashboard] extra
        if (exc.name or "").split(".")[0] not in ("dash", "plotly"):
            raise
        print(f"error: twin serve needs {exc.name}: pip install 'tamky-twin[dashboard]'", file=sys.stderr)
        return 2

    if not 1 <= args.port <= 65535:
        raise SystemExit(f"twin serve: --port must be in 1..65535, got {args.port}")
    if args.store is not None and not args.store.exists():
        raise SystemExit(f"twin serve: --store {args.store} does not exist")
    app = create_app(args.runs, store=args.store, scenarios_dir=args.scenarios,
                     live_refresh_ms=int(max(1.0, args.refresh) * 1000))
    print(f"Tam Kỳ Twin dashboard on http://127.0.0.1:{args.port}/ (runs: {Path(args.runs).resolve()}); Ctrl-C stops it")
    try:
        app.run(host="127.0.0.1", port=args.port, debug=args.debug, use_reloader=False)
    finally:
        app._twin_ctx.jobs.shutdown()
    return 0
