"""``twin serve``: start the dashboard (waitress, 127.0.0.1 by default)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="start the dashboard (Map, Scenario builder, Compare, Sensors, Emergency) on 127.0.0.1",
        description="Start the Tam Kỳ Twin dashboard, a local web app over the run folders in --runs, served by "
        "waitress. It works offline (all scripts served locally) and listens on 127.0.0.1 unless --host says "
        "otherwise. It answers only requests whose Host header is 127.0.0.1, localhost, ::1, the --host or an "
        "--allow-host name (others get 400). Bound to any other address, it prints an access token at start: "
        "starting or cancelling a run, or issuing a warning on the Operations page, then needs it (the Access "
        "token field, or the X-Twin-Token header).")
    p.add_argument("--runs", default="runs", type=Path, help="folder holding run folders (default: runs)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only); any other address "
                   "makes starting runs need the printed access token")
    p.add_argument("--port", default=8050, type=int, help="port (default: 8050)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another name clients may use in the Host header (the machine's name or address "
                   "when serving a network); repeat for more")
    p.add_argument("--require-token", action="store_true",
                   help="need the access token to start or cancel runs even on 127.0.0.1 (a shared machine)")
    p.add_argument("--max-request-mb", default=2.0, type=float,
                   help="largest request body in MB (default: 2); larger ones are answered 413")
    p.add_argument("--max-upload-kb", default=256.0, type=float,
                   help="largest scenario file the builder accepts as an upload, in kB (default: 256)")
    p.add_argument("--threads", default=8, type=int, help="waitress worker threads (default: 8)")
    p.add_argument("--store", default=None, type=Path, help="DuckDB sensor store for the Sensors page")
    p.add_argument("--scenarios", default=None, type=Path,
                   help="folder of base scenarios for the builder (default: the repository's scenarios/); "
                   "scenarios started from the dashboard may name files in this folder only")
    p.add_argument("--refresh", default=10.0, type=float, help="live refresh interval of the Sensors page in s")
    p.add_argument("--live-broker", default=None, metavar="URL",
                   help="MQTT broker of the live twins the Operations page sends warnings to, mqtt://HOST:PORT "
                   "(default: the broker each live run's live.json names)")
    p.add_argument("--debug", action="store_true", help="Dash debug mode (dev tools; 127.0.0.1 only)")
    p.set_defaults(func=serve)


def _host_name(text: str) -> bool:
    import ipaddress
    import re

    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return bool(re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,252})", text))


def _fail(msg: str) -> int:
    print(f"twin serve: {msg}", file=sys.stderr)
    return 2


def serve(args: argparse.Namespace) -> int:
    import math
    import os
    import secrets
    import signal

    # read fields.nc while a live twin appends to it (HDF5 file locks would refuse the reader)
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
    try:
        from .app import LOOPBACK_HOSTS, create_app, is_loopback
    except ImportError as exc:      # a base install: dash, plotly and waitress come with the [dashboard] extra
        if (exc.name or "").split(".")[0] not in ("dash", "plotly", "waitress", "flask"):
            raise
        return _fail(f"twin serve needs {exc.name}: pip install 'tamky-twin[dashboard]'")

    if not 1 <= args.port <= 65535:
        return _fail(f"--port must be in 1..65535, got {args.port}")
    if args.store is not None and not args.store.exists():
        return _fail(f"--store {args.store} does not exist")
    if args.scenarios is not None and not args.scenarios.is_dir():
        return _fail(f"--scenarios {args.scenarios} is not a folder")
    if not (math.isfinite(args.max_request_mb) and 0.01 <= args.max_request_mb <= 1024):
        return _fail(f"--max-request-mb must be in 0.01..1024, got {args.max_request_mb}")
    max_request = int(args.max_request_mb * 1_000_000)
    max_upload = int(args.max_upload_kb * 1000) if math.isfinite(args.max_upload_kb) else -1
    # the upload travels base64-encoded (4/3) inside a JSON request with the form's other values
    if not 1000 <= max_upload <= (max_request - 20_000) * 3 // 4:
        return _fail(f"--max-upload-kb must be in 1..{(max_request - 20_000) * 3 // 4000} for --max-request-mb "
                     f"{args.max_request_mb:g} (the upload travels base64-encoded), got {args.max_upload_kb:g}")
    if args.live_broker is not None:
        from twin.forecast.cap import _broker

        try:
            _broker(args.live_broker)
        except ValueError:
            return _fail(f"--live-broker expects mqtt://HOST[:PORT], got {args.live_broker!r}")
    if not 1 <= args.threads <= 64:
        return _fail(f"--threads must be in 1..64, got {args.threads}")
    host = str(args.host).strip()
    bad = [h for h in [host, *args.allow_host] if not _host_name(h)]
    if bad:
        return _fail(f"--host and --allow-host take a host name or an IP address, got {bad[0]!r}")
    host = host.strip("[]")
    loopback = is_loopback(host)
    if args.debug and not loopback:
        return _fail("--debug shows tracebacks in the browser: only with --host 127.0.0.1")
    try:
        import waitress
    except ImportError:
        return _fail("waitress is not installed: pip install 'tamky-twin[dashboard]' (or pip install waitress)")
    allowed = list(LOOPBACK_HOSTS) + args.allow_host
    if host not in ("0.0.0.0", "::"):  # a wildcard is no name a browser should send
        allowed.append(host)
    token = secrets.token_urlsafe(24) if (not loopback or args.require_token) else None
    app = create_app(args.runs, store=args.store, scenarios_dir=args.scenarios,
                     live_refresh_ms=int(max(1.0, args.refresh) * 1000), allowed_hosts=allowed, token=token,
                     max_request_bytes=max_request, max_upload_bytes=max_upload, live_broker=args.live_broker)
    if args.debug:
        app.enable_dev_tools(debug=True, dev_tools_hot_reload=False)
    shown = f"[{host}]" if ":" in host else host
    try:
        # Flask answers 413 above max_request after waitress has read the body (so the client reads
        # the answer); waitress itself refuses, from the header, bodies over twice that
        server = waitress.create_server(app.server, host=host, port=args.port, threads=args.threads,
                                        max_request_body_size=2 * max_request, ident="twin")
    except OSError as exc:
        return _fail(f"cannot listen on {shown}:{args.port}: {exc.strerror or exc}")
    print(f"Tam Kỳ Twin dashboard on http://{shown}:{args.port}/ (runs: {Path(args.runs).resolve()}); Ctrl-C stops it")
    print(f"Host names answered: {', '.join(dict.fromkeys(allowed))} (add more with --allow-host NAME)")
    if token:
        print(f"Access token (starting or cancelling a run needs it; builder field 'Access token' or header "
              f"X-Twin-Token): {token}")
    sys.stdout.flush()

    def stop(signum, frame):  # SIGTERM: leave the loop like Ctrl-C, then cancel the jobs below
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.run()  # closes the server and returns on Ctrl-C or SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
        app._twin_ctx.jobs.shutdown()
    return 0
