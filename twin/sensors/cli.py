"""``twin sensors ingest|load|qc|export|replay|stations|calibrate-demand|storms`` and ``twin live``."""
from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("sensors", help="sensor feeds: ingest MQTT, load CSV/SensorThings, QC, export, replay",
                              description="Sensor feeds into a DuckDB store: MQTT (SensorThings and vendor "
                              "topics), CSV, SensorThings JSON; quality control; export; replay.")
    sub = p.add_subparsers(dest="sensors_command", metavar="SUBCOMMAND")

    q = sub.add_parser("ingest", help="subscribe to MQTT and store observations until SIGINT/SIGTERM")
    q.add_argument("--broker", required=True, help="mqtt://HOST:PORT")
    q.add_argument("--store", required=True, help="DuckDB file")
    q.add_argument("--config", help="YAML: stations, datastreams, mqtt.vendor mappings")
    q.add_argument("--client-id", help="MQTT client id (the persistent session's name)")
    q.add_argument("--batch-size", type=int, default=20000)
    q.add_argument("--flush-interval", type=float, default=0.2, help="seconds between commits")
    q.add_argument("--progress", action="store_true", help="print store counts (JSON) after each commit")
    q.add_argument("--protocol", choices=["5", "3.1.1"], help="MQTT version (default 5: clean_start=False + "
                   "session expiry; 3.1.1: clean_session=False)")
    q.set_defaults(func=_ingest)

    q = sub.add_parser("load", help="load a CSV (long or wide) or SensorThings JSON pages into the store")
    q.add_argument("file", help="CSV file, or SensorThings JSON page (.json / http URL) with @iot.nextLink")
    q.add_argument("--store", required=True)
    q.add_argument("--config")
    q.add_argument("--tz", help="time zone of naive times (default Asia/Ho_Chi_Minh)")
    q.add_argument("--layout", choices=["auto", "long", "wide"], default="auto")
    q.add_argument("--datastream", help="SensorThings: datastream id when neither URL nor observations say")
    q.add_argument("--qc", action="store_true", help="run QC afterwards")
    q.set_defaults(func=_load)

    q = sub.add_parser("qc", help="run quality control and print the report per datastream")
    q.add_argument("--store", required=True)
    q.add_argument("--datastream", action="append", help="only these (repeatable)")
    q.add_argument("--out", help="write the report to CSV or JSON")
    q.set_defaults(func=_qc)

    q = sub.add_parser("export", help="export one datastream to CSV or Parquet")
    q.add_argument("--store", required=True)
    q.add_argument("--datastream", required=True)
    q.add_argument("--format", choices=["csv", "parquet"], default="csv")
    q.add_argument("--out", help="output file (default <datastream>.<format>)")
    q.set_defaults(func=_export)

    q = sub.add_parser("replay", help="publish a historical series to MQTT as if live")
    q.add_argument("file", nargs="?", help="CSV (long/wide) or Parquet (from export)")
    q.add_argument("--broker", required=True)
    q.add_argument("--speed", type=float, default=60.0, help="time factor (60 = 1 h per minute, 0 = no pacing)")
    q.add_argument("--config")
    q.add_argument("--tz")
    q.add_argument("--shift-to-now", action="store_true", help="move the series so that it starts now")
    q.add_argument("--typhoon", help="instead of FILE: derived R-CLIPER rain at the config's rain gauges, "
                   "e.g. MOLAVE:2020 (hourly over the track)")
    q.set_defaults(func=_replay)

    q = sub.add_parser("stations", help="write a sensor config (stations, datastreams, assimilation) "
                       "from a city bundle's gauge places")
    q.add_argument("--city", default="tamky", help="city bundle name or folder (default tamky)")
    q.add_argument("--resolution", type=float, default=None, help="bundle resolution to load (m)")
    q.add_argument("--out", required=True, help="YAML file to write")
    q.set_defaults(func=_stations)

    q = sub.add_parser("calibrate-demand", help="calibrate the background traffic demand (per origin zone and "
                       "hour) from the store's traffic-camera counts; writes the JSON that the scenario key "
                       "traffic.demand_calibration applies")
    q.add_argument("--store", required=True, help="DuckDB file with traffic_count datastreams tied to links")
    q.add_argument("--city", default="tamky", help="city bundle name or folder (its road network; default tamky)")
    q.add_argument("--trips-per-day", type=float, default=20000.0, help="the scenario's background_trips_per_day")
    q.add_argument("--zones", type=int, default=3, help="origin zones: an N x N grid over the nodes (default 3)")
    q.add_argument("--max-pairs", type=int, default=4000, help="origin-destination pairs routed for the "
                   "assignment matrix (exact when the network has fewer)")
    q.add_argument("--out", required=True, help="JSON file to write")
    q.set_defaults(func=_calibrate_demand)

    q = sub.add_parser("storms", help="list the JTWC storms shipped (within 300 km of Tam Kỳ)")
    q.add_argument("--min-year", type=int, default=0)
    q.set_defaults(func=_storms)

    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])

    live = subparsers.add_parser("live", help="run a scenario live, assimilating MQTT observations as they arrive")
    live.add_argument("scenario", help="scenario YAML")
    live.add_argument("--broker", required=True, help="mqtt://127.0.0.1:PORT")
    live.add_argument("--store", help="DuckDB file (default <run folder>/sensors.duckdb)")
    live.add_argument("--config", help="sensor config YAML (default: the scenario's sensors section)")
    live.add_argument("--speed", type=float, default=1.0, help="model seconds per wall second (1 = real time)")
    live.add_argument("--out", default="runs", help="parent folder of the run folder")
    live.add_argument("--duration", type=float, help="stop after this many model seconds (default: scenario end)")
    live.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a scenario key (as in twin run), e.g. --set resolution_m=150")
    live.add_argument("--start-now", action="store_true", help="set the scenario start to the current local time")
    live.add_argument("--run-dir", help="run folder (default <out>/<name>-live-<UTC stamp>)")
    live.set_defaults(func=_live)


def _clear_errors(func):
    """Bad input (ValueError naming the file/field/value) -> one line on stderr and exit status 2."""
    import functools

    @functools.wraps(func)
    def wrapper(a):
        try:
            return func(a)
        except ValueError as exc:
            print(f"twin: error: {exc}", file=sys.stderr)
            return 2
    return wrapper


def _stop_on_signals(stop):
    def handler(signum, frame):
        stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    return old


@_clear_errors
def _ingest(a) -> int:
    import logging

    from twin.sensors.ingest import Ingester, StoreFailure

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    ing = Ingester(a.broker, a.store, a.config, client_id=a.client_id, batch_size=a.batch_size,
                   flush_interval_s=a.flush_interval, progress=a.progress, protocol=a.protocol)
    _stop_on_signals(ing.stop)
    t = threading.Thread(target=lambda: (ing.wait_subscribed(60) and print(
        f"subscribed {ing.topics} on {ing.host}:{ing.port} as {ing.client_id}", flush=True)), daemon=True)
    t.start()
    try:
        ing.run()
    except StoreFailure as exc:     # the store, not a message, failed: exit so that a supervisor restarts us
        print(f"twin: error: {exc}", file=sys.stderr)
        return 1
    s = ing.stats
    print(json.dumps({"received": s.received, "stored": s.stored, "redelivered": s.redelivered,
                      "rejected": s.rejected, "connects": s.connects}), flush=True)
    return 0


@_clear_errors
def _load(a) -> int:
    from twin.sensors.adapters import load_csv, load_sta
    from twin.sensors.store import SensorStore

    with SensorStore(a.store) as st:
        f = a.file
        if f.startswith(("http://", "https://")) or f.lower().endswith(".json"):
            res, nrej, pages = load_sta(st, f, a.config, datastream_id=a.datastream)
            extra = {"pages": pages}
        else:
            res, nrej = load_csv(st, f, a.config, tz=a.tz, layout=a.layout)
            extra = {}
        out = {"file": f, "inserted": res.inserted, "redelivered": res.redelivered, "conflicts": res.conflicts,
               "out_of_order": res.out_of_order, "clock_skew": res.clock_skew, "rejected": nrej, **extra}
        if a.qc:
            st.run_qc()
        print(json.dumps(out))
    return 0


@_clear_errors
def _qc(a) -> int:
    from twin.sensors.store import SensorStore

    with SensorStore(a.store) as st:
        rep = st.run_qc(a.datastream)
    if a.out:
        if a.out.endswith(".json"):
            Path(a.out).write_text(rep.to_json(orient="records", indent=1))
        else:
            rep.to_csv(a.out, index=False)
    cols = ["datastream_id", "observed_property", "n", "n_good", "completeness", "n_gaps", "flags"]
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(rep[[c for c in cols if c in rep.columns]].to_string(index=False))
    return 0


@_clear_errors
def _export(a) -> int:
    from twin.sensors.store import SensorStore

    out = a.out or f"{a.datastream}.{a.format}"
    with SensorStore(a.store, read_only=True) as st:
        n = st.export(a.datastream, out, a.format)
    print(json.dumps({"datastream": a.datastream, "rows": n, "file": out}))
    return 0


@_clear_errors
def _replay(a) -> int:
    import pandas as pd

    from twin.sensors.replay import read_series, replay

    if a.typhoon:
        from twin.sensors import typhoon
        from twin.sensors.adapters import config_entities, load_config

        name, _, year = a.typhoon.partition(":")
        tr = typhoon.load_track(name, int(year) if year else None)
        stations, streams = config_entities(load_config(a.config))
        pos = {s.station_id: (s.x, s.y) for s in stations}
        gauges = [d for d in streams if d.observed_property == "rain_rate" and d.station_id in pos]
        if not gauges:
            raise SystemExit("--typhoon needs a --config with rain_rate datastreams at located stations")
        times = pd.date_range(tr.start, tr.end, freq="1h")
        rows = []
        for d in gauges:
            x, y = pos[d.station_id]
            r = typhoon.storm_rain_series(tr, times, x, y)
            rows.append(pd.DataFrame({"datastream_id": d.datastream_id, "phenomenon_time": times, "result": r,
                                      "unit": "mm/h"}))
        series = pd.concat(rows, ignore_index=True)
        print(f"replaying derived R-CLIPER rain for {tr.sid} {tr.name} at {len(gauges)} gauge(s) "
              f"(derived, not observed)", file=sys.stderr)
    elif a.file:
        series = read_series(a.file, a.config, tz=a.tz)
    else:
        raise SystemExit("replay needs FILE or --typhoon NAME:YEAR")
    n = replay(series, a.broker, speed=a.speed,
               shift_to=pd.Timestamp.now(tz="UTC") if a.shift_to_now else None)
    print(json.dumps({"published": n, "rows": int(len(series))}))
    return 0 if n == len(series) else 1


@_clear_errors
def _stations(a) -> int:
    import yaml

    from twin.city import load_city
    from twin.sensors.stations import config_from_city

    city = load_city(a.city, **({"resolution_m": a.resolution} if a.resolution else {}))
    cfg = config_from_city(city)
    Path(a.out).write_text("# generated by twin sensors stations from the city bundle's gauge places\n"
                           + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    print(json.dumps({"stations": len(cfg["stations"]), "datastreams": len(cfg["datastreams"]), "file": a.out}))
    return 0


@_clear_errors
def _calibrate_demand(a) -> int:
    from twin.city import load_city
    from twin.sensors import SensorStore
    from twin.sensors.cameras import camera_counts, counted_class_share, hourly_link_counts
    from twin.traffic.calibration import calibrate_background_demand, grid_zones

    if not Path(a.store).exists():
        raise ValueError(f"--store: sensor store {a.store!r} does not exist")
    if a.zones < 1:
        raise ValueError(f"--zones: must be >= 1, got {a.zones}")
    with SensorStore(a.store, read_only=True) as st:
        counts = camera_counts(st)
    if counts.empty:
        raise ValueError(f"--store {a.store!r}: no traffic-camera counts (traffic_count datastreams with a link_id)")
    net = load_city(a.city).roads
    if net is None:
        raise ValueError(f"--city {a.city!r}: the bundle has no road network")
    net = net.largest_strongly_connected()
    cal = calibrate_background_demand(net, hourly_link_counts(counts), a.trips_per_day,
                                      zones=grid_zones(net, a.zones), max_pairs=a.max_pairs,
                                      class_share=counted_class_share(counts))
    cal.save(a.out)
    print(json.dumps({"file": a.out, "zones": cal.n_zones, "hours": cal.hours, "class_share": cal.class_share,
                      "fit": cal.fit}))
    return 0


@_clear_errors
def _storms(a) -> int:
    from twin.sensors.typhoon import list_storms

    df = list_storms()
    print(df[df["year"] >= a.min_year].to_string(index=False))
    return 0


@_clear_errors
def _live(a) -> int:
    from twin.scenario import load_scenario
    from twin.sensors.live import run_live

    return run_live(load_scenario(a.scenario, overrides=a.overrides or None), a.broker, store=a.store, config=a.config, speed=a.speed, out=a.out,
                    duration_s=a.duration, start_now=a.start_now, run_dir=a.run_dir)
