"""``twin forecast``: an ensemble forecast from a run's checkpoint, impacts and CAP warnings."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "forecast", help="ensemble forecast from a run's checkpoint: exceedance, impacts, CAP warnings",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fork K members from RUN_DIR's checkpoint (the analysis when the run assimilated) with\n"
        "seeded perturbed forcing (typhoon track/intensity from JTWC forecast-error statistics, rain,\n"
        "reservoir release, sea level), run them on Dask for --horizon and write FDIR:\n"
        "  exceedance.nc, impacts.parquet, gauges.parquet, forecast.json [, alerts/*.xml].\n"
        "Default components flood,roads (fast); --components full runs coupled members.",
        epilog="examples:\n  twin forecast runs/molave --members 16 --horizon 12h --out forecasts/molave-12h\n"
        "  twin forecast runs/molave --members 8 --horizon 6h --alerts rules.yaml --out fc2 --previous fc1")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (needs a checkpoint: outputs.checkpoint_every)")
    p.add_argument("--members", type=int, required=True, help="ensemble size K (>= 2; member 0 is the control)")
    p.add_argument("--horizon", required=True, metavar="DURATION", help="forecast length, e.g. 12h")
    p.add_argument("--at", default="latest", metavar="T|latest",
                   help="issue time: a checkpoint's time since the start (e.g. 6h) or 'latest' (default)")
    p.add_argument("--every", metavar="DURATION", help="output interval (default 30min, or the horizon if shorter)")
    p.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler address (default: a LocalCluster)")
    p.add_argument("--workers", type=int, metavar="N", help="LocalCluster workers (default min(K, CPUs))")
    p.add_argument("--components", default="flood,roads",
                   help="flood,roads (default) | full | a list of flood,roads,traffic,people,services")
    p.add_argument("--alerts", metavar="RULES_YAML", help="warning rules: write CAP 1.2 alerts into FDIR/alerts")
    p.add_argument("--previous", metavar="FDIR_OLD", help="an earlier forecast whose alerts these update or cancel")
    p.add_argument("--sender", help="CAP sender (default the rules file's, else tamky-twin@localhost)")
    p.add_argument("--mqtt", metavar="mqtt://HOST:PORT", help="publish the alerts on this broker")
    p.add_argument("--mqtt-topic", default=None, help="topic for the alerts (default tamky/alerts/cap)")
    p.add_argument("--seed", type=int, help="perturbation seed (default the run's scenario seed)")
    p.add_argument("--out", required=True, metavar="FDIR", help="the forecast folder (new or empty)")
    p.set_defaults(func=_cmd_forecast)


def _cmd_forecast(args) -> int:
    from twin.forecast.cap import DEFAULT_TOPIC, publish_alerts
    from twin.forecast.ensemble import run_forecast
    from twin.workflows.cli import _duration_arg, fail, one_line

    try:
        horizon = _duration_arg("--horizon", args.horizon)
        every = _duration_arg("--every", args.every) if args.every else None
        at = "latest" if args.at in (None, "latest") else _duration_arg("--at", args.at)
        if args.mqtt:
            from twin.forecast.cap import _broker

            _broker(args.mqtt)
        doc = run_forecast(args.run_dir, args.members, horizon, args.out, at=at, every_s=every,
                           scheduler=args.scheduler, n_workers=args.workers, components=args.components,
                           rules=args.alerts, seed=args.seed, previous=args.previous, sender=args.sender)
    except (ValueError, OSError) as exc:
        return fail(exc)
    out = Path(args.out)
    n_pub = 0
    if args.mqtt and doc["alerts"]:
        try:
            n_pub = publish_alerts([out / a["file"] for a in doc["alerts"]], args.mqtt, args.mqtt_topic or DEFAULT_TOPIC)
        except (ValueError, OSError) as exc:
            print(f"error: the forecast is written to {out}, but publishing failed: {one_line(exc)}", file=sys.stderr)
            return 2
    print(json.dumps({"forecast": str(out), "members": doc["n_members"], "wall_time_s": round(doc["wall_time_s"], 2),
                      "alerts": [f"{a['msgType']} {a['area']} p={a['probability']:.2f}" for a in doc["alerts"]],
                      "published": n_pub}, ensure_ascii=False))
    return 0
