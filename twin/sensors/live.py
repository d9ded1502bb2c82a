"""``twin live``: the coupled twin paced to the wall clock, assimilating MQTT observations as they arrive.

One process holds everything: an :class:`~twin.sensors.ingest.Ingester` thread (MQTT -> the DuckDB
store, at least once), and the :class:`twin.simulation.Simulation` of the scenario in the main
thread, with an :class:`~twin.sensors.assimilation.Assimilator` reading the same store at coupling
step 6. A pacing callback holds the model clock at ``speed`` model seconds per wall second
(``speed=1``: real time; the scenario start can be set to *now* with ``start_now``), QC runs over
the store every ``qc_every_s`` model seconds, and the run folder is written as the run goes (the
scenario's recorders, plus ``live.json`` after each step: model time, observations stored,
what the assimilation set), so the dashboard can follow it. The scenario's checkpoints
(``outputs.checkpoint_every``) are what ``twin fork`` starts a forecast from.

SIGINT/SIGTERM stop the run at the end of the current step: the ingester flushes, acknowledges and
disconnects keeping its session, and a checkpoint is written. SIGUSR1 writes a checkpoint of the
live state at the end of the current step (``live.json`` names it): ``twin fork RUN_DIR --at T``
starts a forecast from it while the live run goes on.

Decisions reach the running twin on MQTT: the live twin always subscribes to
``twin/<run folder name>/decisions`` on its broker and answers on ``.../decisions/ack``
(:mod:`twin.sensors.decision_channel`; the dashboard's Operations page sends warnings this way).
Requests are submitted between coupling steps, while the pacing waits; ``live.json`` lists them.
"""
from __future__ import annotations

import datetime as _dt
import json
import signal
import threading
import time
from pathlib import Path

import numpy as np


def _sensor_config(scenario, config_path):
    from twin.sensors.adapters import load_config

    if config_path:
        return load_config(config_path)
    s = getattr(scenario, "sensors", None)
    if s is None:
        return {}
    return {"assimilation": dict(getattr(s, "assimilation", {}) or {})}


def run_live(scenario, broker: str, *, store=None, config=None, speed: float = 1.0, out="runs",
             duration_s: float | None = None, start_now: bool = False, city=None, qc_every_s: float = 600.0,
             run_dir=None, client_id: str = "twin-live", on_step=None) -> int:
    """Run ``scenario`` live against ``broker``. Returns 0 when it reached its end or was stopped."""
    from twin.build import build_twin
    from twin.output.schedules import IterationInterval
    from twin.scenario import Scenario, load_scenario
    from twin.sensors.assimilation import Assimilator
    from twin.sensors.ingest import Ingester
    from twin.sensors.store import SensorStore
    from twin.simulation import Simulation

    if speed <= 0:
        raise ValueError(f"--speed must be > 0 model seconds per wall second, got {speed!r}")
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    cfg = _sensor_config(sc, config)
    overrides = {}
    if start_now:
        now_local = _dt.datetime.now(_dt.timezone(_dt.timedelta(hours=7))).replace(tzinfo=None, microsecond=0)
        overrides["start"] = now_local.isoformat()
    if getattr(sc, "sensors", None) is not None and sc.sensors.enabled:
        overrides["sensors.enabled"] = False      # the live store is opened here, writable
    if overrides:
        sc = sc.with_overrides(overrides)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = Path(run_dir) if run_dir else Path(out) / f"{sc.name}-live-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    store_path = Path(store) if store else run_dir / "sensors.duckdb"
    st = SensorStore(store_path)
    ing = Ingester(broker, st, cfg, client_id=client_id, flush_interval_s=0.2)
    ing_thread = threading.Thread(target=ing.run, name="twin-live-ingest", daemon=True)
    ing_thread.start()
    listener = None
    inbox = None
    tw = None
    try:
        if not ing.wait_subscribed(30):
            raise RuntimeError(f"could not subscribe on {broker} within 30 s")
        from twin.sensors.decision_channel import DecisionInbox

        inbox = DecisionInbox(broker, run_dir.name, client_id=f"{client_id}-decisions").start()
        if not inbox.subscribed.wait(30):
            raise RuntimeError(f"could not subscribe to {inbox.topic} on {broker} within 30 s")
        tw = build_twin(sc, city=city)
        tw.assimilator = Assimilator(st, cfg.get("assimilation") or {}, tw.terrain, sc.start)
        stop_time = float(duration_s) if duration_s is not None else None
        if stop_time is not None:
            stop_time = max(1, round(stop_time / float(sc.coupling_step))) * float(sc.coupling_step)
        sim = Simulation(tw, stop_time=stop_time, out_dir=run_dir)
        if cfg.get("auto_warn"):  # CAP alerts (twin forecast --mqtt) become warning decisions
            from twin.forecast.cap import DEFAULT_TOPIC, AlertListener

            listener = AlertListener(broker, cfg.get("alerts_topic") or DEFAULT_TOPIC,
                                     client_id=f"{client_id}-alerts").start()
        wall0 = time.monotonic()
        last_qc = [-np.inf]
        status = {"last": None}

        def take_decisions(s):
            for ack in inbox.drain(s, sc.start):
                got = status.setdefault("decisions_received", [])
                got.append({k: v for k, v in ack.model_dump().items() if v is not None and k != "run"})
                del got[:-50]

        def pace(s):
            # hold the model clock at `speed` model seconds per wall second; decisions sent on the
            # decisions topic are submitted while it waits (between steps: they act at the next one)
            target = wall0 + s.time / speed
            while True:
                take_decisions(s)
                lag = target - time.monotonic()
                if lag <= 0 or not s.running:
                    break
                inbox.arrived.wait(min(lag, 0.5))
            take_decisions(s)

        want_ckpt = threading.Event()

        def write_status(info):
            tmp = run_dir / "live.json.tmp"
            tmp.write_text(json.dumps(info, default=str, indent=1))
            tmp.replace(run_dir / "live.json")

        def live_status(s):
            for ident, dec in (listener.pending() if listener is not None else []):
                try:
                    s.submit(dec, source="api", issuer=f"cap:{ident}")
                    status.setdefault("auto_warn", []).append(ident)
                except ValueError as exc:
                    status.setdefault("auto_warn_refused", []).append(f"{ident}: {exc}")
            if want_ckpt.is_set() and s.output is not None:
                want_ckpt.clear()
                status["checkpoint"] = str(s.output.checkpoint(s))
            if s.time - last_qc[0] >= qc_every_s:
                st.run_qc()
                last_qc[0] = s.time
            info = {"scenario": sc.name, "t_s": s.time, "time_local": str(sc.start + _dt.timedelta(seconds=s.time)),
                    "iteration": s.iteration, "stop_time_s": s.stop_time, "speed": speed,
                    "wall_s": round(time.monotonic() - wall0, 3), "broker": broker, "store": str(store_path),
                    "observations": st.count(), "rejects": st.count("rejects"),
                    "ingest": vars(ing.stats).copy(), "state": "running", "decisions_topic": inbox.topic}
            info["assimilation_last"] = tw.assimilator.last_applied
            for k in ("auto_warn", "auto_warn_refused", "decisions_received"):
                if status.get(k):
                    info[k] = status[k]
            if status.get("checkpoint"):
                info["last_checkpoint"] = status["checkpoint"]
            hist = tw.assimilator.history
            if hist:
                info["nudging_last"] = {k: hist[-1][k] for k in ("t_s", "before", "after")}
            ens = getattr(tw.assimilator, "ensemble", None)
            if ens is not None and ens.reports:       # method: enkf
                rep = ens.reports[-1].as_dict()
                info["enkf_last"] = {"members": ens.n_members, **{k: v for k, v in rep.items()
                                                                  if k not in ("volume_change_m3", "clipped_m3")}}
            stats = tw.assimilator.statistics()
            if len(stats):
                info["nudging_stats"] = stats.to_dict("records")
            status["last"] = info
            write_status(info)
            if on_step is not None:
                on_step(s, info)

        sim.add_callback("live_pace", pace, IterationInterval(1))
        sim.add_callback("live_status", live_status, IterationInterval(1))

        def stop(signum=None, frame=None):
            sim.running = False

        def checkpoint_now(signum=None, frame=None):
            want_ckpt.set()

        old = {}
        if threading.current_thread() is threading.main_thread():
            old[signal.SIGTERM] = signal.signal(signal.SIGTERM, stop)
            if hasattr(signal, "SIGUSR1"):
                old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, checkpoint_now)
        try:
            sim.run()
        except KeyboardInterrupt:
            pass          # Simulation wrote a checkpoint at the end of the step
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
            if status["last"] is not None:   # the page refuses decisions for a stopped run at once
                write_status({**status["last"], "state": "stopped", "stop_reason": sim.stop_reason})
        print(json.dumps({"run": str(run_dir), "t_s": sim.time, "stop_reason": sim.stop_reason,
                          "observations": st.count(), "rejects": st.count("rejects")}), flush=True)
        return 0
    finally:
        if listener is not None:
            listener.stop()
        if inbox is not None:
            inbox.stop()
        if tw is not None and tw.assimilator is not None:
            tw.assimilator.close()          # enkf.dask: its client and LocalCluster
        ing.stop()
        ing_thread.join(30)
        st.close()
