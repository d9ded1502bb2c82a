"""The coupled clock: one fixed coupling step, a documented order, callbacks and checkpoints.

Time is ``iteration · Δt_c`` (an integer counter; no float drift). One call of
:meth:`Simulation.time_step` advances the twin from ``t0 = iteration·Δt_c`` to ``t1 = t0 + Δt_c``
in this order (the order is the contract; tests pin it):

1. **decisions** (``twin.decisions``: scenario interventions and everything submitted with
   :meth:`Simulation.submit`) — every pending decision with time ``t_e < t1`` is applied, in time
   order (ties in submission order: scenario interventions in file order first). *Boundary rule*: a
   decision exactly at ``t0`` acts on the step that starts at ``t0`` (it is not visible in outputs
   recorded at ``t0``, which were taken at the end of the previous step, and it is visible in
   everything recorded at ``t1``); one strictly inside ``(t0, t1)`` is applied at ``t0`` (rounded
   down to the step's start); one at ``t_e >= stop_time`` is never applied. Each is logged (run
   folder: ``decisions.parquet``).
2. ``flood.run_one_step(Δt_c)`` (adaptive sub-steps inside the flood component);
3. **roads ← flood depth**: depth sampled along each link (:mod:`twin.couplings`), links deeper than
   the closure depth closed, re-opened when they drain;
4. ``traffic.run_one_step(Δt_c)``;
5. **people**: ``people.run_one_step(Δt_c, depth, speed)``;
6. **services**: ``services.run_one_step(Δt_c)`` (SimPy ``run(until=t1)``: half-open ``[t0, t1)``, like
   SimPy's own ``until``);
7. **sensor assimilation** (when a sensors section and an assimilator exist);
8. the iteration counter is incremented (``time`` becomes ``t1``), then **callbacks** whose schedule fires;
9. **recorders** whose schedule fires.

At the start of a fresh run (iteration 0) callbacks and recorders see the initial state once.

Stop conditions are callbacks (after Oceananigans): ``stop_time`` (end of the scenario), a wall-time
limit, and a NaN/negative-depth checker that stops with a clear message and writes a checkpoint.
Components are optional: any of traffic/people/services/sensors may be ``None``.
"""
from __future__ import annotations

import math
import signal
import sys
import time as _time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twin.output.schedules import IterationInterval, Schedule

__all__ = ["Simulation", "Callback", "SimulationStopped", "NumericalInstability", "run_scenario", "PHASES"]

PHASES = ("events", "flood", "roads", "traffic", "people", "services", "assimilation", "callbacks", "recorders")


class NumericalInstability(RuntimeError):
    """NaN or negative water depth: the run stopped (a checkpoint was written if a run folder exists)."""


class SimulationStopped(Exception):
    pass


@dataclass
class Callback:
    """``func(sim)`` called when ``schedule(sim)`` is true (after the step, before recorders)."""

    func: Callable[[Simulation], Any]
    schedule: Schedule = field(default_factory=lambda: IterationInterval(1))


class Simulation:
    """Drives a :class:`twin.build.Twin` with a fixed coupling step.

    Parameters
    ----------
    twin : the built twin (``twin.build.build_twin``)
    dt : coupling step Δt_c [s] (default the scenario's ``coupling_step``)
    stop_time : [s] (default the scenario's ``duration``); must be a whole number of steps
    wall_time_limit : [s] stop (with a checkpoint) when the run has used this much wall time
    out_dir : run folder; when given, recorders write ``fields.nc``, tables, KPIs, the manifest...
    nan_check_every : iterations between NaN/negative-depth checks (default 1)
    share_fields : compute the depth and speed on the twin's grid once per step and hand the same
        read-only arrays to every consumer (default; False computes them on every call, the reference
        the benchmark compares against: the results are identical)
    """

    def __init__(self, twin, dt: float | None = None, stop_time: float | None = None, *,
                 wall_time_limit: float | None = None, out_dir: str | Path | None = None,
                 nan_check_every: int = 1, record: bool = True, share_fields: bool = True):
        self.twin = twin
        sc = twin.scenario
        self.dt = float(dt if dt is not None else sc.coupling_step)
        self.share_fields = bool(share_fields)
        self.iteration = 0
        self._output_finished = False
        self.stop_time = float(stop_time if stop_time is not None else sc.duration)
        self.wall_time_limit = wall_time_limit
        self.wall_time = 0.0            # wall seconds spent stepping (accumulated across resumes)
        self.running = False
        self.stop_reason: str | None = None
        self.phase_log: list[tuple[int, str]] | None = None  # set to [] to trace the order (tests)
        # wall seconds spent in each phase of the coupled step (accumulated across resumes; in the
        # manifest as "phase_wall_s"): where a run's time goes
        self.phase_wall_s: dict[str, float] = {}
        self._phase: str | None = None
        self._phase_t0 = 0.0
        self.callbacks: OrderedDict[str, Callback] = OrderedDict()
        self.callbacks["stop_time_exceeded"] = Callback(_stop_time_exceeded, IterationInterval(1))
        self.callbacks["wall_time_limit_exceeded"] = Callback(_wall_time_exceeded, IterationInterval(1))
        self.callbacks["nan_checker"] = Callback(_nan_checker, IterationInterval(max(1, int(nan_check_every))))
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.output = None
        if self.out_dir is not None and record:
            from twin.output.recorders import RunOutput

            self.output = RunOutput(self, self.out_dir)
        self._started_wall: float | None = None
        self._base_wall = 0.0
        self._steps_in_run = 0
        self._initialized = False

    # -- clock ---------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        return self.iteration * self.dt

    @property
    def stop_time(self) -> float:
        """[s] The run stops here. Raising it on a simulation that is not recording lets ``run()``
        go on; a recorded run that finished (its outputs are final) cannot be extended: fork it."""
        return self._stop_time

    @stop_time.setter
    def stop_time(self, value: float) -> None:
        v = float(value)
        n = v / self.dt
        if not math.isfinite(v) or v <= 0 or abs(n - round(n)) > 1e-9 * max(1.0, n):
            raise ValueError(f"stop_time {value!r} s is not a positive whole number of coupling steps ({self.dt:g} s)")
        if int(round(n)) < self.iteration:
            raise ValueError(f"stop_time {v:g} s is before the current time {self.time:g} s")
        if self._output_finished and int(round(n)) != self.stop_iteration:
            raise ValueError(f"{self.out_dir}: this recorded run has finished and written its outputs; it cannot be "
                             "extended (fork it, or run the scenario with a longer duration)")
        self.stop_iteration = int(round(n))
        self._stop_time = v

    @property
    def finished(self) -> bool:
        return self.iteration >= self.stop_iteration

    def submit(self, decision, at: float | None = None, *, source: str = "api", issuer: str = ""):
        """Queue a decision (a dict with a ``type`` key, JSON text, or a ``twin.decisions`` object)
        for model time ``at`` (default: now, i.e. the start of the next coupling step; a time inside a
        step acts at that step's start). It is validated against the twin first: an invalid one
        raises :class:`twin.decisions.DecisionError` naming the field and value, and nothing changes.
        Returns the queue entry (``seq`` is its ``decision_id`` in ``decisions.parquet``)."""
        return self.twin.submit(decision, at, now=self.time, source=source, issuer=issuer)

    def acts_at(self, at: float) -> float:
        """The model time a decision submitted for ``at`` acts: the start of the step holding it."""
        return max(self.time, math.floor(at / self.dt + 1e-9) * self.dt)

    def add_callback(self, name: str, func: Callable, schedule: Schedule | None = None) -> None:
        sched = schedule or IterationInterval(1)
        sched.check(self.dt)
        self.callbacks[name] = Callback(func, sched)

    def _log(self, phase: str | None) -> None:
        """Enter ``phase`` (None: leave the current one): trace it and time it."""
        now = _time.perf_counter()
        if self._phase is not None:
            self.phase_wall_s[self._phase] = self.phase_wall_s.get(self._phase, 0.0) + (now - self._phase_t0)
        self._phase, self._phase_t0 = phase, now
        if phase is not None and self.phase_log is not None:
            self.phase_log.append((self.iteration, phase))

    # -- one step ------------------------------------------------------------------------------
    def time_step(self) -> None:
        """Advance exactly one coupling step (see the module docstring for the order)."""
        tw = self.twin
        t0, dt = self.time, self.dt
        t1 = t0 + dt
        tw.close_field_cache()   # decisions may change the water: no field is shared across them
        self._log("events")
        tw.apply_decisions(t0, t1, self.stop_time)
        if tw.flood is not None:
            self._log("flood")
            tw.flood.run_one_step(dt)
        # from here to the end of the step the depth and speed on the twin's grid are computed once
        # (the subgrid downscaling) and shared by roads, people, services, callbacks and recorders
        if self.share_fields:
            tw.open_field_cache()
        if tw.traffic is not None:
            self._log("roads")
            tw.update_roads()
            self._log("traffic")
            tw.traffic.run_one_step(dt)
        if tw.people is not None:
            self._log("people")
            tw.people.run_one_step(dt, tw.depth(), tw.speed())
        if tw.services is not None:
            self._log("services")
            tw.couple_services()
            tw.services.run_one_step(dt)
        if tw.assimilator is not None:
            self._log("assimilation")
            tw.assimilate(t1)
            if self.share_fields:
                tw.open_field_cache()   # the analysis changed the water: a fresh cache
        self.iteration += 1
        self._steps_in_run += 1
        self._after_step()

    def _after_step(self) -> None:
        if self._started_wall is not None:
            self.wall_time = self._base_wall + (_time.monotonic() - self._started_wall)
        tw = self.twin
        if self.share_fields and tw._field_cache is None:
            tw.open_field_cache()
        try:
            self._log("callbacks")
            for cb in list(self.callbacks.values()):
                if cb.schedule(self):
                    cb.func(self)
            self._log("recorders")
            if self.output is not None:
                self.output.record(self)
        finally:
            tw.close_field_cache()
        self._log(None)

    # -- run ------------------------------------------------------------------------------------
    def initialize(self) -> None:
        if self._initialized:
            return
        self._initialized = True
        if self.output is not None:
            self.output.initialize(self)
        if self.iteration == 0:
            self._after_step()  # initial state to callbacks and recorders

    def run(self, progress: bool | Callable | None = None, until: float | None = None) -> Simulation:
        """Step until a stop callback fires, or (``until``, model seconds) until that time: the run
        then pauses, unfinished, so decisions can be submitted before ``run()`` goes on.
        ``progress``: True for a tqdm bar, or ``f(sim)``.

        Ctrl-C (KeyboardInterrupt) writes a checkpoint into the run folder (if any) and re-raises.
        """
        self.running = True
        self.stop_reason = None
        t_wall = _time.monotonic()
        self._started_wall = t_wall
        base_wall = self._base_wall = self.wall_time
        self._steps_in_run = 0
        bar = None
        # Ctrl-C is deferred to the end of the current step, so the checkpoint is consistent
        # (a second Ctrl-C interrupts at once, without a checkpoint).
        self._interrupted = False
        self._hard_interrupt = False
        old_handler = None
        import threading

        if threading.current_thread() is threading.main_thread():
            def _on_sigint(signum, frame):
                if self._interrupted:
                    self._hard_interrupt = True
                    raise KeyboardInterrupt
                self._interrupted = True
            old_handler = signal.signal(signal.SIGINT, _on_sigint)
        try:
            self.initialize()
            bar = _ProgressBar(self) if progress is True else None
            if self._interrupted:
                raise KeyboardInterrupt
            until_it = None if until is None else int(math.floor(float(until) / self.dt + 1e-9))
            while self.running and not self.finished and (until_it is None or self.iteration < until_it):
                self.time_step()
                if self._interrupted:
                    raise KeyboardInterrupt
                self.wall_time = base_wall + (_time.monotonic() - t_wall)
                if bar is not None:
                    bar.update(self)
                elif callable(progress):
                    progress(self)
            if self.finished and self.stop_reason is None:
                self.stop_reason = f"stop time {self.stop_time:g} s reached"
            # final outputs (a Ctrl-C now is deferred until they are written)
            if self.output is not None:
                if self.finished:
                    self.output.finish(self)
                    self._output_finished = True
                elif until is None or self.iteration < (until_it or 0):
                    self.output.checkpoint(self)
        except KeyboardInterrupt:
            self.wall_time = base_wall + (_time.monotonic() - t_wall)
            if self.output is not None and not self._hard_interrupt:
                path = self.output.checkpoint(self)
                print(f"\ninterrupted at t = {_fmt_t(self.time)}; checkpoint {path}\n"
                      f"resume with: twin run --resume {self.out_dir}", file=sys.stderr)
            raise
        except BaseException:   # (a numerical failure too: its checkpoint is written where it is detected)
            if self.output is not None:   # the output thread's writes end before the failure goes on
                self.output.settle(raise_errors=False)
            raise
        finally:
            self.twin.close_field_cache()   # an exception inside a step leaves no shared field behind
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
            if bar is not None:
                bar.close()
        if self.output is not None:
            self.output.settle()   # what the run recorded is in its files when run() returns
        return self

    # -- state ----------------------------------------------------------------------------------
    def get_state(self) -> dict:
        state = {
            "iteration": self.iteration,
            "dt": self.dt,
            "wall_time": self.wall_time,
            "phase_wall_s": dict(self.phase_wall_s),
            "twin": self.twin.get_state(),
            "schedules": {k: cb.schedule.get_state() for k, cb in self.callbacks.items()},
        }
        if self.output is not None:
            state["output"] = self.output.get_state()
        return state

    def set_state(self, state: dict, restore_output: bool = True, fork_at: float | None = None,
                  base_scenario=None) -> None:
        """Restore a state (``get_state``); ``fork_at``/``base_scenario``: the state comes from a run
        of another scenario (a fork; see :meth:`twin.build.Twin.set_state`)."""
        if float(state["dt"]) != self.dt:
            raise ValueError(f"checkpoint coupling step {state['dt']} s differs from this run's {self.dt} s")
        self.iteration = int(state["iteration"])
        if self.iteration > self.stop_iteration:
            raise ValueError(f"the state is at t = {self.iteration * self.dt:g} s, after this run's stop time "
                             f"{self.stop_time:g} s")
        self.wall_time = float(state.get("wall_time", 0.0))
        self.phase_wall_s = {k: float(v) for k, v in state.get("phase_wall_s", {}).items()}
        self.twin.set_state(state["twin"], fork_at=fork_at, base_scenario=base_scenario)
        for k, s in state.get("schedules", {}).items():
            if k in self.callbacks:
                self.callbacks[k].schedule.set_state(s)
        if self.output is not None and restore_output and "output" in state:
            self.output.set_state(state["output"])
            self._initialized = True
        else:
            self._initialized = self.iteration > 0


# -- stop callbacks ------------------------------------------------------------------------------
def _stop_time_exceeded(sim: Simulation) -> None:
    if sim.iteration >= sim.stop_iteration:
        sim.running = False
        sim.stop_reason = f"stop time {sim.stop_time:g} s reached"


def _wall_time_exceeded(sim: Simulation) -> None:
    if sim.wall_time_limit is None or sim._started_wall is None or sim._steps_in_run == 0:
        return
    used = sim.wall_time
    if used >= sim.wall_time_limit:
        sim.running = False
        sim.stop_reason = f"wall-time limit {sim.wall_time_limit:g} s reached at t = {_fmt_t(sim.time)}"


def _nan_checker(sim: Simulation) -> None:
    depth = sim.twin.depth()
    if depth is None:
        return
    valid = sim.twin.valid
    # the common case in few passes (0 <= depth < inf: NaN compares false); the counts only when bad
    ok = depth >= 0
    ok &= depth < np.inf
    if valid is not None:
        ok |= ~valid
    if ok.all():
        return
    d = depth[valid] if valid is not None else depth
    bad_nan = ~np.isfinite(d)
    bad_neg = d < 0
    if bad_nan.any() or bad_neg.any():
        n_nan, n_neg = int(bad_nan.sum()), int(bad_neg.sum())
        idx = np.flatnonzero(~np.isfinite(depth) | (depth < 0))
        r, c = np.unravel_index(idx[0], depth.shape) if len(idx) else (-1, -1)
        msg = (f"numerical instability at t = {_fmt_t(sim.time)} (iteration {sim.iteration}): "
               f"{n_nan} NaN and {n_neg} negative depth cells, first at row {r}, col {c}"
               + (f" (depth {depth[r, c]!r})" if r >= 0 else ""))
        sim.running = False
        sim.stop_reason = msg
        if sim.output is not None:
            path = sim.output.checkpoint(sim)
            msg += f"; state saved to {path}"
        raise NumericalInstability(msg + ". Try a smaller flood.alpha or check the terrain/forcing.")


# -- progress --------------------------------------------------------------------------------------
def _fmt_t(t: float) -> str:
    t = float(t)
    if not math.isfinite(t):
        return "?"
    h, rem = divmod(int(round(t)), 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


class _ProgressBar:
    """tqdm bar over simulated seconds: simulated time, speed (sim-s per wall-s), ETA."""

    def __init__(self, sim: Simulation):
        from tqdm import tqdm

        self.t0_wall = _time.monotonic()
        self.t0_sim = sim.time
        self.bar = tqdm(total=int(round(sim.stop_time)), initial=int(round(sim.time)), unit="sim-s",
                        unit_scale=False, dynamic_ncols=True, file=sys.stderr,
                        bar_format="{percentage:3.0f}%|{bar}| {desc}", mininterval=0.5)
        self.update(sim)

    def update(self, sim: Simulation) -> None:
        el = max(_time.monotonic() - self.t0_wall, 1e-9)
        speed = (sim.time - self.t0_sim) / el
        remaining = (sim.stop_time - sim.time) / speed if speed > 0 else float("nan")
        self.bar.n = int(round(sim.time))
        self.bar.set_description_str(
            f"t = {_fmt_t(sim.time)} / {_fmt_t(sim.stop_time)}  speed {speed:,.0f} sim-s/s  "
            f"ETA {_fmt_t(remaining)}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


# -- convenience ------------------------------------------------------------------------------------
def run_scenario(scenario, out_dir: str | Path | None = None, overrides: list[str] | None = None,
                 progress: bool = False, stop_time: float | None = None, seed: int | None = None, city=None):
    """Load (if a path), build and run a scenario; returns the finished :class:`Simulation`.

    ``out_dir`` makes it a recorded run (the run folder); ``stop_time`` shortens the horizon.
    """
    from twin.build import build_twin
    from twin.scenario import Scenario, load_scenario

    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario, overrides=overrides)
    elif overrides:
        scenario = scenario.with_overrides(overrides)
    if seed is not None:
        scenario = scenario.with_overrides({"seed": int(seed)})
    twin = build_twin(scenario, city=city)
    sim = Simulation(twin, stop_time=stop_time, out_dir=out_dir,
                     wall_time_limit=scenario.outputs.wall_time_limit)
    sim.run(progress=progress)
    return sim
