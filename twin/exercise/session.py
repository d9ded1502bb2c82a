"""The paced session: the coupled simulation of an exercise, in its own process, at ``speed`` model
seconds per wall second.

:class:`PacedSession` owns the :class:`twin.simulation.Simulation`. Its clock is a target model
time ``t_anchor + speed · (wall − wall_anchor)``: a coupling step is taken (``Simulation.run(until=)``,
one step at a time) as soon as the target reaches the step's end, so model time stays within a step
of the target while the machine keeps up; the lag behind the target (in coupling steps) is measured
after every step. Pause freezes the clock; resume and a new speed re-anchor it at the model time
reached; ``next_inject`` runs as fast as the machine allows up to the step holding the next inject.

Between steps the session answers requests: decisions are validated against the twin and queued
with ``Simulation.submit`` (source ``api``, issuer the seat), so they act at the start of the next
coupling step and land in ``decisions.parquet``; injects fire when the next step holds their time
(their decision is submitted with source ``exercise``) and are written to ``injects.parquet``.

:func:`session_main` runs a session in a child process, talking to the web server over one
``multiprocessing`` pipes (``("req", id, seat, op, payload)`` in; ``("resp", id, code, body)`` and
``("status", dict)`` out; ``("stop",)`` ends it, leaving a checkpoint when the run is unfinished).
"""
from __future__ import annotations

import datetime as _dt
import gc
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SessionConfig", "PacedSession", "session_main", "MAX_SPEED", "STATES", "CONTROL_ACTIONS"]

#: fastest pace a seat may ask for [model s per wall s]
MAX_SPEED = 100_000.0
STATES = ("building", "running", "paused", "finished", "failed")
CONTROL_ACTIONS = ("pause", "resume", "speed", "next_inject")
#: incidents and units listed by the API at most (the newest)
MAX_ROWS = 2000


@dataclass
class SessionConfig:
    exercise_yaml: str            # RUN_DIR/exercise.yaml, the exercise as run
    run_dir: str
    speed: float = 60.0
    start_paused: bool = False


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _one_line(exc: BaseException) -> str:
    text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())
    return text or type(exc).__name__


def _num(v: Any) -> Any:
    """JSON-safe: numpy scalars to Python, non-finite floats to None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def check_speed(value: Any) -> float:
    """A speed from a request: a finite number in (0, MAX_SPEED]; ValueError naming the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"value: expected a speed in model seconds per wall second, got {value!r:.60}")
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"value: expected a number, got {value!r:.60}") from None
    if not (math.isfinite(v) and 0 < v <= MAX_SPEED):
        raise ValueError(f"value: the speed must be > 0 and <= {MAX_SPEED:g} model s per wall s, got {value!r:.60}")
    return v


class PacedSession:
    """One exercise run, paced against the wall clock (``clock``: seconds, monotonic)."""

    def __init__(self, cfg: SessionConfig, clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.clock = clock
        self.state = "building"
        self.speed = check_speed(cfg.speed)
        self.sim: Any = None
        self.exercise: Any = None
        self.order: list[int] = []
        self.fired: list[dict] = []
        self.lags: list[float] = []
        self.error: str | None = None
        self.objectives: list[dict] | None = None
        self._anchor = (0.0, clock())
        self._jump_to: float | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def build(self) -> None:
        from twin.build import build_twin
        from twin.exercise.spec import check_inject_decisions, load_exercise
        from twin.simulation import Simulation

        ex = load_exercise(self.cfg.exercise_yaml)
        tw = build_twin(ex.scenario)
        check_inject_decisions(ex, tw)
        if ex.objectives:
            from twin.exercise.objectives import check_objectives

            check_objectives(ex.objectives, tw.city)     # the wards they name exist
        self.sim = Simulation(tw, out_dir=self.cfg.run_dir, wall_time_limit=None)
        self.sim.run(until=0.0)       # outputs open, the initial state recorded
        self.exercise = ex
        self.order = ex.inject_order()
        self._fire_injects()
        self.state = "paused" if self.cfg.start_paused else "running"
        self._reanchor()

    def _reanchor(self) -> None:
        self._anchor = (float(self.sim.time) if self.sim is not None else 0.0, self.clock())

    def target(self) -> float:
        """The model time the clock has reached (frozen while paused)."""
        if self.sim is None:
            return 0.0
        if self.state != "running":
            return float(self.sim.time)
        t0, w0 = self._anchor
        t = t0 + self.speed * (self.clock() - w0)
        if self._jump_to is not None:
            t = max(t, self._jump_to)
        return t

    def due_in(self) -> float:
        """Wall seconds until the next step is due (0: now)."""
        if self.state != "running" or self.sim is None or self.sim.finished:
            return math.inf
        gap = self.sim.time + self.sim.dt - self.target()
        return max(0.0, gap / self.speed)

    def tick(self) -> bool:
        """Take one coupling step if it is due; True when a step was taken."""
        sim = self.sim
        if self.state != "running" or sim is None:
            return False
        if sim.finished:
            self._finish()
            return False
        if self.target() + 1e-9 * sim.dt < sim.time + sim.dt:
            return False
        jump = self._jump_to
        sim.run(until=sim.time + sim.dt)
        if jump is not None:
            if sim.time >= jump - 1e-9:
                self._jump_to = None
                self._reanchor()
        else:
            self.lags.append(max(0.0, self.target() - sim.time) / sim.dt)
        self._fire_injects()
        if sim.finished:
            self._finish()
        return True

    def _finish(self) -> None:
        if self.state == "finished":
            return
        self.state = "finished"
        self._write_injects()
        try:
            from twin.exercise.objectives import score_objectives
        except ImportError:
            return
        try:
            self.objectives = [dict(o) for o in score_objectives(Path(self.cfg.run_dir),
                                                                 self.exercise.parsed_objectives)]
        except Exception as exc:  # scoring is advisory here (twin review scores again): say why it failed
            self.objectives = [{"error": f"objectives could not be scored: {_one_line(exc)}"}]

    def stop(self) -> None:
        """End the session: an unfinished run leaves a checkpoint (``twin run --resume`` goes on)."""
        sim = self.sim
        if sim is None:
            return
        self._write_injects()
        if not sim.finished and sim.output is not None:
            sim.output.checkpoint(sim)

    # -- injects ---------------------------------------------------------------------------------
    def _fire_injects(self) -> None:
        """Fire every inject the next coupling step holds (time < now + Δt_c): shown now, its
        decision queued (source ``exercise``) for the inject's time, acting at that step's start."""
        sim, ex = self.sim, self.exercise
        if sim.finished:
            return
        horizon = sim.time + sim.dt
        fired_any = False
        while self.order and ex.injects[self.order[0]].at < horizon:
            i = self.order.pop(0)
            inj = ex.injects[i]
            did = -1
            if inj.decision is not None:
                try:
                    p = sim.submit(inj.decision, at=max(float(inj.at), sim.time), source="exercise",
                                   issuer="exercise")
                    did = int(p.seq)
                except ValueError as exc:   # validated at start; the state may have changed since
                    print(f"twin exercise: inject {i}: its decision was refused: {_one_line(exc)}", file=sys.stderr)
            self.fired.append({"inject_id": i, "t_s": float(inj.at), "message": inj.message, "decision_id": did,
                               "fired_wall_time": _utc_now(), "fired_t_s": float(sim.time)})
            fired_any = True
        if fired_any:
            self._write_injects()

    def _write_injects(self) -> None:
        import pandas as pd

        from twin.output import schema as S

        if self.sim is None:
            return
        cols = [c.name for c in S.TABLES["injects.parquet"].columns]
        df = pd.DataFrame([{c: r[c] for c in cols} for r in self.fired], columns=cols)
        df = df.astype({"inject_id": "int64", "t_s": "float64", "decision_id": "int64",
                        "message": object, "fired_wall_time": object})
        S.validate_frame("injects.parquet", df)
        path = Path(self.cfg.run_dir) / "injects.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)

    def next_inject_time(self) -> float | None:
        if not self.order:
            return None
        return float(self.exercise.injects[self.order[0]].at)

    # -- requests --------------------------------------------------------------------------------
    def status(self) -> dict:
        sim = self.sim
        t = float(sim.time) if sim is not None else 0.0
        out: dict[str, Any] = {"state": self.state, "t_s": t, "speed": self.speed, "run_dir": str(self.cfg.run_dir),
                               "error": self.error}
        if sim is not None:
            sc = sim.twin.scenario
            out.update(clock_local=sc.datetime_at(t).isoformat(timespec="seconds"), dt_s=float(sim.dt),
                       stop_time_s=float(sim.stop_time), iteration=int(sim.iteration), scenario=sc.name,
                       target_t_s=float(self.target()),
                       injects=[{k: v for k, v in r.items()} for r in self.fired],
                       injects_left=len(self.order), next_inject_s=self.next_inject_time())
            lags = self.lags
            out["lag_steps"] = {"last": lags[-1] if lags else None, "max": max(lags) if lags else None,
                                "p95": float(np.percentile(lags, 95)) if lags else None, "steps": len(lags),
                                "over_one": sum(x > 1.0 for x in lags)}
        if self.objectives is not None:
            out["objectives"] = self.objectives
        return out

    def handle(self, seat: str, op: str, payload: Any) -> tuple[int, Any]:
        """Answer one request (the API checked the token and what the seat may do)."""
        if op == "session":
            return 200, self.status()
        if self.sim is None:
            return 409, {"error": f"the session is {self.state}" + (f": {self.error}" if self.error else "")
                         + "; try again when it runs"}
        try:
            if op == "control":
                return self._control(payload)
            if op == "decide":
                return self._decide(seat, payload)
            if op == "decisions":
                return 200, self._decisions()
            if op == "incidents":
                return 200, self._incidents()
            if op == "units":
                return 200, self._units()
            if op == "kpis":
                return 200, self._kpis()
        except (ValueError, TypeError, KeyError) as exc:
            return 422, {"error": _one_line(exc)[:2000]}
        return 404, {"error": f"unknown operation {op!r}"}

    def _control(self, body: dict) -> tuple[int, Any]:
        action = body.get("action")
        if action not in CONTROL_ACTIONS:
            return 422, {"error": f"action: expected one of {', '.join(CONTROL_ACTIONS)}, got {action!r:.60}",
                         "field": "action"}
        if self.state in ("finished", "failed"):
            return 409, {"error": f"the exercise has {self.state}" + (f": {self.error}" if self.error else "")}
        if action == "pause":
            if self.state == "running":
                self._jump_to = None
                self.state = "paused"
        elif action == "resume":
            if self.state == "paused":
                self.state = "running"
                self._reanchor()
        elif action == "speed":
            try:
                v = check_speed(body.get("value"))
            except ValueError as exc:
                return 422, {"error": str(exc), "field": "value"}
            self.speed = v
            self._reanchor()
        elif action == "next_inject":
            t = self.next_inject_time()
            if t is None:
                return 409, {"error": "no inject is left"}
            # run to the start of the step holding the inject: it fires there, before that step runs
            dt = self.sim.dt
            self._jump_to = max(float(self.sim.time), math.floor(t / dt + 1e-9) * dt)
            if self._jump_to <= self.sim.time:
                self._jump_to = None
            if self.state == "paused":
                self.state = "running"
            self._reanchor()
        return 200, self.status()

    def _decide(self, seat: str, body: dict) -> tuple[int, Any]:
        from twin.decisions import DecisionError, finite_time, parse_decision

        if self.state in ("finished", "failed"):
            return 409, {"error": f"the exercise has {self.state}: no decision can act any more"
                                  + (f" ({self.error})" if self.error else "")}
        sim = self.sim
        try:
            d = parse_decision({k: v for k, v in body.items()})
            at = None
            if "at" in body and body["at"] is not None:
                at = finite_time(d.at, "at")
                if at >= sim.stop_time:
                    raise DecisionError(f"at: {at:g} s is after the end of the exercise ({sim.stop_time:g} s)",
                                        "at", at)
            p = sim.submit(d, at, source="api", issuer=seat)
        except DecisionError as exc:
            return 422, {"error": str(exc)[:2000], "field": exc.field}
        acts = float(sim.acts_at(p.at))
        return 202, {"decision_id": int(p.seq), "type": d.type, "issuer": seat, "at_s": float(p.at),
                     "queued_t_s": float(sim.time), "acts_at_s": acts,
                     "acts_at_local": sim.twin.scenario.datetime_at(acts).isoformat(timespec="seconds"),
                     "status": "queued"}

    def _decisions(self) -> dict:
        q = self.sim.twin.decisions
        log = [{k: _num(v) for k, v in r.items()} for r in q.log]
        pending = [{"decision_id": int(p.seq), "at_s": float(p.at), "acts_at_s": float(self.sim.acts_at(p.at)),
                    "source": p.source, "issuer": p.issuer, "type": p.decision.type} for p in q.pending]
        return {"t_s": float(self.sim.time), "decisions": log, "pending": pending}

    def _incidents(self) -> dict:
        tw = self.sim.twin
        if tw.services is None:
            return {"t_s": float(self.sim.time), "incidents": []}
        cols = ["incident_id", "kind", "priority", "call_s", "x", "y", "persons", "depth_m", "unit_id", "unit_kind",
                "dispatch_s", "arrive_scene_s", "clear_s", "outcome", "response_time_s"]
        df = tw.services.incident_table()[cols].tail(MAX_ROWS)
        rows = [{k: _num(v) for k, v in r.items()} for r in df.to_dict("records")]
        for r in rows:
            if r.get("unit_kind") is None or (isinstance(r.get("unit_kind"), float)):
                r["unit_kind"] = None
        return {"t_s": float(self.sim.time), "incidents": rows}

    def _units(self) -> dict:
        tw, t = self.sim.twin, float(self.sim.time)
        if tw.services is None:
            return {"t_s": t, "units": []}
        xs, ys = tw.services.positions_at(t)
        units = [{"unit_id": u.uid, "kind": u.kind, "x": float(x), "y": float(y), "phase": u.phase,
                  "incident_id": int(u.incident), "available": bool(u.available)}
                 for u, x, y in zip(tw.services.units, xs, ys)]
        return {"t_s": t, "units": units[:MAX_ROWS]}

    def _kpis(self) -> dict:
        from twin.couplings import depth_class_areas
        from twin.output.tables import people_state_counts

        tw, t = self.sim.twin, float(self.sim.time)
        out: dict[str, Any] = {"t_s": t}
        d = tw.depth()
        if d is not None:
            out["flooded_area_m2"] = {k: float(v) for k, v in depth_class_areas(d, tw.cell_area, tw.land).items()}
            wet = np.asarray(d)[tw.land] if tw.land is not None else np.asarray(d)
            out["max_depth_on_land_m"] = _num(float(np.nanmax(wet))) if wet.size else None
        if tw.people is not None:
            out["people_states"] = people_state_counts(tw)
        if tw.services is not None:
            out["services"] = {k: ([_num(x) for x in v] if isinstance(v, list) else _num(v))
                               for k, v in tw.services.kpis().items()}
        if tw.traffic is not None and len(tw.closed):
            out["road_links_closed_share"] = float(np.mean(tw.closed))
        q = tw.decisions
        out["decisions"] = {"applied": sum(r["outcome"] == "applied" for r in q.log),
                            "rejected": sum(r["outcome"] == "rejected" for r in q.log), "pending": len(q.pending)}
        return out


# -- the child process --------------------------------------------------------------------------------
#: requests answered after a step before the next one when the session is behind the clock
MAX_REQUESTS_PER_STEP = 16


class _Stop(Exception):
    """The server said stop."""


def _serve(s: PacedSession, inbox: Any, outbox: Any) -> bool:
    """Answer one message from the server; False when it says stop."""
    msg = inbox.recv()
    if msg[0] == "stop":
        return False
    if msg[0] == "req":
        _, rid, seat, op, payload = msg
        try:
            code, body = s.handle(seat, op, payload)
        except Exception as exc:  # a bug, not bad input: answered without a traceback
            print(f"twin exercise: internal error on {op}: {_one_line(exc)}", file=sys.stderr)
            code, body = 500, {"error": "internal error in the session (see the server's log)"}
        outbox.send(("resp", rid, code, body))
        if op in ("control", "decide"):
            outbox.send(("status", s.status()))
    return True


def session_main(cfg: SessionConfig, inbox: Any, outbox: Any) -> None:
    """Entry point of the session process: build, then pace and answer until told to stop.
    ``inbox``/``outbox``: the receiving and the sending end of two one-way pipes."""
    import signal

    # the server process decides when to stop: Ctrl-C in the terminal goes to it only (own process
    # group), and the session ends when told to, or when the server's end of the pipe closes
    try:
        os.setpgrp()
    except OSError:  # pragma: no cover - not permitted: SIGINT is ignored below instead
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    s = PacedSession(cfg)
    outbox.send(("status", s.status()))
    try:
        s.build()
    except Exception as exc:   # a bad exercise or a failed build: reported, the server stays up to say so
        s.state, s.error = "failed", _one_line(exc)[:2000]
        print(f"twin exercise: the session could not start: {s.error}", file=sys.stderr)
    outbox.send(("status", s.status()))
    if s.sim is not None:
        # the twin's objects live as long as the session: out of the cyclic collector's way, so a full
        # collection between two steps does not walk them (a pause that would show as lag)
        gc.collect()
        gc.freeze()
    last_status = time.monotonic()
    try:
        while True:
            # a due step goes first; between steps the requests wait for the next step to fall due,
            # and after a step those that came in during it are answered (at most MAX_REQUESTS_PER_STEP
            # while behind the clock, so a stream of polls neither holds up the steps nor is shut out)
            due = s.due_in()
            if due > 0.0 and inbox.poll(min(due, 0.25)):
                if not _serve(s, inbox, outbox):
                    break
                continue
            try:
                stepped = s.tick()
            except Exception as exc:   # numerical instability or another failure of the run
                s.state, s.error = "failed", _one_line(exc)[:2000]
                print(f"twin exercise: the run stopped: {s.error}", file=sys.stderr)
                stepped = True
            now = time.monotonic()
            if stepped or now - last_status > 1.0:
                outbox.send(("status", s.status()))
                last_status = now
            if stepped:
                n = 0
                while n < MAX_REQUESTS_PER_STEP and inbox.poll(0):
                    n += 1
                    if not _serve(s, inbox, outbox):
                        raise _Stop
    except (_Stop, EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        try:
            s.stop()
        except Exception as exc:  # pragma: no cover - best effort on the way out
            print(f"twin exercise: could not write the checkpoint: {_one_line(exc)}", file=sys.stderr)
        try:
            outbox.send(("status", s.status()))
            outbox.send(("bye",))
        except (OSError, EOFError, BrokenPipeError):
            pass
