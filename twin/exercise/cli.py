"""``twin exercise``: run an exercise file paced against the wall clock, steered by seats over the
dashboard's Exercise page and the JSON API under ``/api/v1/``."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

__all__ = ["register"]


def register(subparsers) -> None:
    from twin.workflows.cli import _SET_HELP

    p = subparsers.add_parser(
        "exercise", help="run a flood-response exercise that seats steer as it unfolds (dashboard + /api/v1)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build the twin of EXERCISE.yaml (a scenario plus roles, injects and objectives; see\n"
        "scenarios/exercises/), run it paced at --speed model seconds per wall second in its own process,\n"
        "and serve the dashboard with an Exercise page and the JSON API under /api/v1/ (OpenAPI:\n"
        "/api/v1/openapi.json). A bearer token per seat is printed at start and its hash written to\n"
        "RUN_DIR/seats.json (mode 0600). Ctrl-C stops it (an unfinished run leaves a checkpoint).",
        epilog="example:\n  twin exercise scenarios/exercises/phuninh_dambreak.yaml --speed 60 --out runs/drill-1")
    p.add_argument("exercise", help="exercise YAML file")
    p.add_argument("--speed", type=float, default=60.0,
                   help="model seconds per wall second (default 60: one model hour per wall minute)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another name clients may use in the Host header (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=_SET_HELP)
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default runs/<name>-exercise-<UTC timestamp>)")
    p.add_argument("--start-paused", action="store_true",
                   help="start paused after the build (a seat with control resumes it)")
    p.add_argument("--threads", type=int, default=8, help="web server threads (default 8)")
    p.set_defaults(func=_cmd_exercise)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _cmd_exercise(args) -> int:
    import secrets

    from twin.dashboard.cli import _host_name
    from twin.exercise.session import MAX_SPEED
    from twin.exercise.spec import load_exercise
    from twin.workflows.cli import _stamp, fail

    if not (math.isfinite(args.speed) and 0 < args.speed <= MAX_SPEED):
        return fail(f"--speed must be > 0 and <= {MAX_SPEED:g} model seconds per wall second, got {args.speed:g}")
    if not 1 <= args.port <= 65535:
        return fail(f"--port must be in 1..65535, got {args.port}")
    if not 1 <= args.threads <= 64:
        return fail(f"--threads must be in 1..64, got {args.threads}")
    host = str(args.host).strip()
    bad = [h for h in [host, *args.allow_host] if not _host_name(h)]
    if bad:
        return fail(f"--host and --allow-host take a host name or an IP address, got {bad[0]!r}")
    host = host.strip("[]")
    try:
        ex = load_exercise(args.exercise, args.overrides)
    except (ValueError, OSError) as exc:
        return fail(exc)
    out = Path(args.out) if args.out else Path("runs") / f"{ex.scenario.name}-exercise-{_stamp()}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        return fail(f"{out}: the run folder exists and is not empty")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "exercise.yaml").write_text(ex.to_yaml(), encoding="utf-8")
    except OSError as exc:
        return fail(f"{out}: cannot write the run folder ({exc.strerror or exc})")
    tokens = {name: secrets.token_urlsafe(18) for name in ex.seats}
    seats = {name: {"token_sha256": _hash(tokens[name]), "kinds": list(role.kinds), "control": bool(role.control)}
             for name, role in ex.seats.items()}
    _write_private(out / "seats.json", json.dumps(seats, indent=2) + "\n")
    return _serve(args, ex, out, host, tokens, seats)


def _hash(token: str) -> str:
    from twin.exercise.api import token_hash

    return token_hash(token)


def _serve(args, ex, out: Path, host: str, tokens: dict[str, str], seats: dict) -> int:
    import multiprocessing as mp
    import secrets
    import signal

    from twin.workflows.cli import fail

    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")   # pages read fields.nc while the run writes it
    try:
        import waitress

        from twin.dashboard.app import LOOPBACK_HOSTS, MAX_REQUEST_BYTES, create_app, is_loopback
    except ImportError as exc:
        return fail(f"twin exercise needs the dashboard extra ({exc.name}): pip install 'tamky-twin[dashboard]'")
    from twin.exercise.api import SessionClient, register_api
    from twin.exercise.session import SessionConfig, session_main

    loopback = is_loopback(host)
    allowed = list(LOOPBACK_HOSTS) + list(args.allow_host)
    if host not in ("0.0.0.0", "::"):
        allowed.append(host)
    # away from loopback the dashboard's own run controls need a token too (as twin serve does)
    dash_token = None if loopback else secrets.token_urlsafe(24)
    app = create_app(out.resolve().parent, allowed_hosts=allowed, token=dash_token)
    # the Exercise page's drawing tools draw on this city (twin.dashboard.pages.exercise)
    app.server.config["TWIN_EXERCISE_CITY"] = {"city": ex.scenario.city, "resolution_m": ex.scenario.resolution_m}
    ctx = mp.get_context("spawn")        # a fresh interpreter: no threads or OpenMP state forked
    to_session_r, to_session_w = ctx.Pipe(duplex=False)
    from_session_r, from_session_w = ctx.Pipe(duplex=False)
    cfg = SessionConfig(exercise_yaml=str(out / "exercise.yaml"), run_dir=str(out), speed=float(args.speed),
                        start_paused=bool(args.start_paused))
    shown = f"[{host}]" if ":" in host else host
    try:
        server = waitress.create_server(app.server, host=host, port=args.port, threads=args.threads,
                                        max_request_body_size=2 * MAX_REQUEST_BYTES, ident="twin")
    except OSError as exc:
        return fail(f"cannot listen on {shown}:{args.port}: {exc.strerror or exc}")
    proc = ctx.Process(target=session_main, args=(cfg, to_session_r, from_session_w), name="twin-exercise-session",
                       daemon=True)
    proc.start()
    to_session_r.close()
    from_session_w.close()
    client = SessionClient(from_session_r, to_session_w, process=proc, run_dir=str(out))
    register_api(app.server, client, seats)
    setattr(app, "_twin_exercise", client)   # noqa: B010  (for tests and the page)

    sc = ex.scenario
    print(f"exercise {sc.name}: {len(ex.roles)} role(s), {len(ex.injects)} inject(s), {len(ex.objectives)} "
          f"objective(s); {sc.duration / 3600:g} h at speed {args.speed:g} "
          f"({sc.duration / args.speed / 60:.1f} min of wall time)")
    print(f"run folder: {out}")
    print(f"dashboard: http://{shown}:{args.port}/exercise   API: http://{shown}:{args.port}/api/v1/ "
          f"(OpenAPI: /api/v1/openapi.json)")
    print("seat tokens (Authorization: Bearer <token>; also asked by the Exercise page):")
    for name, role in ex.seats.items():
        what = ", ".join(role.kinds) if name != "control" else "the clock and every decision kind"
        if name != "control" and role.control:
            what += "; the clock"
        print(f"  {name}: {tokens[name]}   ({what or 'no decisions'})")
    if dash_token:
        print(f"dashboard access token (starting runs from the builder): {dash_token}")
    print("building the twin... (GET /api/v1/session says 'running' when the clock starts); Ctrl-C stops")
    sys.stdout.flush()

    def stop(signum, frame):
        raise SystemExit(0)

    failed: list[str] = []

    def watch_build() -> None:
        # a build that fails (an inject's place or an objective's ward not in the city, a broken
        # city bundle) is bad input: say so and stop, exit code 2
        st = client.wait_for(("running", "paused", "finished", "failed"), timeout=24 * 3600.0)
        if st.get("state") == "failed" or not client.alive:
            failed.append(str(st.get("error") or "the session ended while building"))
            os.kill(os.getpid(), signal.SIGTERM)

    import threading

    previous = signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=watch_build, name="exercise-build-watch", daemon=True).start()
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):   # Ctrl-C, SIGTERM: stop the session below
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            server.close()
        except Exception:  # pragma: no cover - closing a closed server
            pass
        client.stop()
        app._twin_ctx.jobs.shutdown()
        st = client.status
        print(f"\nexercise {st.get('state')} at t = {st.get('t_s', 0):g} s; run folder {out}")
        sys.stdout.flush()
    if failed:
        return fail(failed[0])
    return 0
