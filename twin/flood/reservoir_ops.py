"""Phú Ninh operated as its rules say: a level pool with the real level–volume relation, the free
spillway, two gated spillways, the Long Sơn 1 fuse spillway, and the operating rule.

Design data (facts from the operating procedure "Quy trình vận hành điều tiết hồ chứa nước Phú Ninh",
transcribed in ``../shared/data/facts_tamky/FACTS.md``; operator Công ty TNHH MTV Khai thác Thủy lợi
Quảng Nam): dead level 20.44 m (70.3 Mm³), normal level (MNDBT) 32.00 m (344 Mm³, surface 32.10 km²),
design flood level 35.40 m, check flood level 36.47 m; spillway No. 1 free overflow 37 m wide;
No. 2 gated, sill 26 m, 2 radial gates 10 m wide × 6 m high, design discharge 1,053 m³/s; No. 3
gated, sill 24 m, 2 gates 6 m × 8 m, 853 m³/s; emergency fuse spillway Long Sơn 1, 210 m wide, breaks
at 36.50 m down to 32.00 m. Flood-season guide curves (upper "phòng phá hoại" and the maximum level
held at month end) by date; flood operation (Điều 9): from 32.00 m and rising, the gates keep the
level ≤ 35.40 m; at 35.40 m emergency release to keep ≤ 36.47 m; above 36.50 m the fuse spillway breaches.

How it is built (stated, not measured):

* **Level–volume**: ``V(z) = c (z − z_b)^b`` with ``c, z_b, b`` fitted exactly to the three design
  figures V(20.44) = 70.3 Mm³, V(32.00) = 344 Mm³, dV/dz(32.00) = 32.10 km² (:func:`fit_level_volume`);
  above 32 m it extrapolates smoothly (≈ 117 Mm³ of flood storage up to 35.40 m).
* **Weirs**: ``Q = m B √(2g) H^1.5``, m = 0.40 for the free spillway (ogee-like crest at 32.00 m, an
  assumption) and 0.36 for the breached fuse section (broad crest).
* **Gates**: free weir flow over the sill while the head is below the gate opening
  (``m = μ/√2``, continuous at H = a), orifice flow ``Q = μ B a √(2g (H − a/2))`` above it; μ of each
  gated spillway is fitted so that the fully open gates pass their design discharge at the design
  flood level 35.40 m (an assumption: the procedure gives the discharge, not the level it refers to).
* **Fuse**: once the level reaches 36.50 m the 210 m section opens to its 32.00 m sill over
  ``FUSE_EROSION_S`` (1 h, an assumption) and stays open.
* **Rule**: below the guide ceiling of the date (the upper guide curve, capped by the maximum level held
  at month end) the gates stay closed; above it they release the inflow plus the excess over
  ``DRAWDOWN_S`` (24 h), at most ``safe_release_m3_per_s`` (the downstream channel; default 800 m³/s,
  the largest release reported in the city) while the level is below 35.40 m; at 35.40 m and above all
  gates open fully (the emergency release). Gate openings follow from the wanted release by bisection.
* **Inflow**: runoff coefficient × rain × catchment 235 km² (plus any hydrograph given).

Everything here is deterministic: the same inputs give the same series, so a gate decision during a run
re-integrates the pool from its time on (:func:`operate` with ``t_from``/``state0``) and a restart
re-installs it identically.
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field

import numpy as np

G = 9.81
SQRT2G = math.sqrt(2.0 * G)
FUSE_EROSION_S = 3600.0
DRAWDOWN_S = 24 * 3600.0


def fit_level_volume(z_dead: float, v_dead: float, z_norm: float, v_norm: float, a_norm: float) -> tuple[float, float, float]:
    """(c, z_b, b) of V = c (z − z_b)^b through (z_dead, v_dead), (z_norm, v_norm) with dV/dz(z_norm) = a_norm."""
    ratio = v_norm / a_norm                       # = (z_norm − z_b) / b

    def f(d: float) -> float:                     # d = z_norm − z_b
        b = d / ratio
        return b * math.log(d / (d - (z_norm - z_dead))) - math.log(v_norm / v_dead)

    lo, hi = (z_norm - z_dead) * 1.0001, 500.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(lo) * f(mid) <= 0:
            hi = mid
        else:
            lo = mid
    d = 0.5 * (lo + hi)
    b = d / ratio
    c = v_norm / d ** b
    return c, z_norm - d, b


@dataclass(frozen=True)
class GatedSpillway:
    name: str
    sill_m: float
    n_gates: int
    gate_width_m: float
    gate_height_m: float
    design_q_m3_s: float
    design_level_m: float

    @property
    def width_m(self) -> float:
        return self.n_gates * self.gate_width_m

    @property
    def mu(self) -> float:
        """Discharge coefficient fitted to the design discharge with the gates fully open."""
        h, a = self.design_level_m - self.sill_m, self.gate_height_m
        if h <= a:
            return self.design_q_m3_s / (self.width_m * SQRT2G * h ** 1.5) * math.sqrt(2.0)
        return self.design_q_m3_s / (self.width_m * a * SQRT2G * math.sqrt(h - a / 2.0))

    def discharge(self, level_m: float, opening_m: float) -> float:
        h = level_m - self.sill_m
        a = min(max(opening_m, 0.0), self.gate_height_m)
        if h <= 0 or a <= 0:
            return 0.0
        if h <= a:
            return self.mu / math.sqrt(2.0) * self.width_m * SQRT2G * h ** 1.5
        return self.mu * self.width_m * a * SQRT2G * math.sqrt(h - a / 2.0)

    def opening_for(self, level_m: float, q_m3_s: float) -> float:
        """The opening [m] that passes ``q`` at ``level`` (full opening if it cannot)."""
        if q_m3_s <= 0 or level_m <= self.sill_m:
            return 0.0
        if self.discharge(level_m, self.gate_height_m) <= q_m3_s:
            return self.gate_height_m
        lo, hi = 0.0, self.gate_height_m
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if self.discharge(level_m, mid) < q_m3_s:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)


# flood-season guide curves (month-end dates; the "31/XI" of the transcription is 31/XII)
GUIDE_DATES = ((9, 30), (10, 31), (11, 30), (12, 31), (1, 31))
GUIDE_UPPER_M = (25.85, 29.00, 30.50, 32.00, 32.00)
GUIDE_MAX_HELD_M = (30.50, 30.50, 30.50, 32.00, 32.00)
DRY_DATES = ((2, 28), (3, 31), (4, 30), (5, 31), (6, 30), (7, 31), (8, 31))
DRY_UPPER_M = (32.00, 31.10, 30.50, 29.50, 27.50, 25.20, 20.44)


@dataclass(frozen=True)
class ReservoirDesign:
    name: str = "Phú Ninh"
    dead_level_m: float = 20.44
    dead_volume_m3: float = 70.3e6
    normal_level_m: float = 32.00
    normal_volume_m3: float = 344.0e6
    normal_area_m2: float = 32.10e6
    design_flood_level_m: float = 35.40
    check_flood_level_m: float = 36.47
    dam_crest_m: float = 37.60
    free_crest_m: float = 32.00
    free_width_m: float = 37.0
    free_m: float = 0.40
    gated: tuple[GatedSpillway, ...] = (
        GatedSpillway("No. 2", 26.0, 2, 10.0, 6.0, 1053.0, 35.40),
        GatedSpillway("No. 3", 24.0, 2, 6.0, 8.0, 853.0, 35.40),
    )
    fuse_trigger_m: float = 36.50
    fuse_sill_m: float = 32.00
    fuse_width_m: float = 210.0
    fuse_m: float = 0.36
    catchment_m2: float = 235e6
    lv: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))

    def __post_init__(self) -> None:
        object.__setattr__(self, "lv", fit_level_volume(self.dead_level_m, self.dead_volume_m3, self.normal_level_m,
                                                        self.normal_volume_m3, self.normal_area_m2))

    def volume(self, level_m: float) -> float:
        c, zb, b = self.lv
        return c * max(level_m - zb, 0.0) ** b

    def level(self, volume_m3: float) -> float:
        c, zb, b = self.lv
        return zb + (max(volume_m3, 0.0) / c) ** (1.0 / b)

    def area(self, level_m: float) -> float:
        c, zb, b = self.lv
        return c * b * max(level_m - zb, 1e-6) ** (b - 1.0)

    def gate(self, spillway: str | int) -> int:
        key = str(spillway).replace("No.", "").strip()
        for i, g in enumerate(self.gated):
            if g.name.replace("No.", "").strip() == key:
                return i
        raise ValueError(f"spillway {spillway!r}: {self.name} has gated spillways "
                         f"{', '.join(g.name for g in self.gated)}")

    def guide_ceiling(self, when: _dt.datetime) -> float:
        """The highest level the rule holds before a flood on this date (upper guide curve, capped by the
        maximum level held at month end in the flood season)."""
        doy = when.timetuple().tm_yday
        pts: list[tuple[float, float]] = []
        for (m, d), up, held in zip(GUIDE_DATES, GUIDE_UPPER_M, GUIDE_MAX_HELD_M):
            pts.append((_dt.date(2001, m, d).timetuple().tm_yday, min(up, held) if m != 1 else up))
        for (m, d), up in zip(DRY_DATES, DRY_UPPER_M):
            pts.append((_dt.date(2001, m, d).timetuple().tm_yday, up))
        pts.sort()
        x = np.array([p[0] for p in pts], float)
        y = np.array([p[1] for p in pts], float)
        # periodic over the year
        x = np.concatenate([x - 365, x, x + 365])
        y = np.concatenate([y, y, y])
        return float(np.interp(doy, x, y))


PHU_NINH = ReservoirDesign()


@dataclass
class PoolState:
    level_m: float
    fuse_opened_at_s: float | None = None
    openings_m: tuple[float, ...] = (0.0, 0.0)


@dataclass
class PoolRun:
    t_s: np.ndarray
    level_m: np.ndarray
    release_m3_s: np.ndarray          # everything leaving the reservoir toward the city
    inflow_m3_s: np.ndarray
    openings_m: np.ndarray            # (n, n_gated)
    spill_free_m3_s: np.ndarray
    spill_fuse_m3_s: np.ndarray
    fuse_opened_at_s: float | None
    events: list[dict]

    def state_at(self, t_s: float) -> PoolState:
        i = int(np.clip(np.searchsorted(self.t_s, t_s, side="right") - 1, 0, len(self.t_s) - 1))
        fuse = self.fuse_opened_at_s if (self.fuse_opened_at_s is not None and self.fuse_opened_at_s <= t_s) else None
        return PoolState(float(self.level_m[i]), fuse, tuple(float(v) for v in self.openings_m[i]))

    def summary(self) -> dict:
        return {"max_level_m": float(np.max(self.level_m)), "final_level_m": float(self.level_m[-1]),
                "peak_release_m3_s": float(np.max(self.release_m3_s)),
                "peak_inflow_m3_s": float(np.max(self.inflow_m3_s)),
                "fuse_opened_at_s": self.fuse_opened_at_s, "events": self.events}


def operate(design: ReservoirDesign, t_s: np.ndarray, inflow_m3_s: np.ndarray, state0: PoolState, *,
            start: _dt.datetime, mode: str = "rule", safe_release_m3_s: float = 800.0,
            manual: list[tuple[float, int, float]] | None = None, t_from: float = 0.0,
            base: PoolRun | None = None, extra_out_m3_s: np.ndarray | None = None) -> PoolRun:
    """Integrate the pool over ``t_s`` (uniform steps) from ``state0``.

    ``mode``: "rule" (the operating rule), "manual" (gates as ``manual`` sets them: (t_s, gate index,
    opening_m), held until the next setting of that gate). A manual setting always overrides the rule
    for that gate from its time on (a gate decision during a rule-operated run). With ``base`` and
    ``t_from``, the series before ``t_from`` are copied from ``base`` and integration restarts there.
    ``extra_out_m3_s``: scheduled releases (``reservoir_release`` interventions) drawn from the pool too;
    they are part of the returned release.
    """
    t = np.asarray(t_s, float)
    q_in = np.asarray(inflow_m3_s, float)
    if t.ndim != 1 or q_in.shape != t.shape or len(t) < 2 or not (np.diff(t) > 0).all():
        raise ValueError(f"{design.name}: times must be an increasing 1-D series with one inflow per time "
                         f"(got {t.shape} times, {q_in.shape} inflows)")
    if not np.isfinite(q_in).all() or (q_in < 0).any():
        i = int(np.flatnonzero(~np.isfinite(q_in) | (q_in < 0))[0])
        raise ValueError(f"{design.name}: inflow at t = {t[i]:g} s is {float(q_in[i])} m3/s: must be finite and >= 0")
    if not (design.dead_level_m - 20.0 <= state0.level_m <= design.dam_crest_m):
        raise ValueError(f"{design.name}: initial level {state0.level_m:g} m is outside the reservoir "
                         f"(below its bed or above the dam crest {design.dam_crest_m:g} m)")
    n, ng = len(t), len(design.gated)
    level = np.empty(n)
    rel = np.zeros(n)
    free = np.zeros(n)
    fuse_q = np.zeros(n)
    opn = np.zeros((n, ng))
    events: list[dict] = []
    manual = sorted(manual or [])
    i0 = 0
    if base is not None and t_from > t[0]:
        i0 = min(int(np.searchsorted(t, t_from, side="left")), n - 1)
        level[:i0], rel[:i0], free[:i0] = base.level_m[:i0], base.release_m3_s[:i0], base.spill_free_m3_s[:i0]
        fuse_q[:i0], opn[:i0] = base.spill_fuse_m3_s[:i0], base.openings_m[:i0]
        events = [e for e in base.events if e["t_s"] < t[i0]]
        fuse0 = base.fuse_opened_at_s if (base.fuse_opened_at_s is not None and base.fuse_opened_at_s < t[i0]) else None
        state0 = PoolState(float(base.level_m[i0]), fuse0, tuple(base.openings_m[i0]))
    z = state0.level_m
    vol = design.volume(z)
    fuse_at = state0.fuse_opened_at_s
    gate_manual: dict[int, float] = {}
    for ts, gi, a in manual:
        if ts < t[i0]:
            gate_manual[gi] = a
    pending = [m for m in manual if m[0] >= t[i0]]
    emergency = z >= design.design_flood_level_m
    for i in range(i0, n):
        ti = t[i]
        dt = (t[i + 1] - ti) if i + 1 < n else (ti - t[i - 1] if i > 0 else 0.0)
        while pending and pending[0][0] <= ti:
            ts, gi, a = pending.pop(0)
            gate_manual[gi] = a
            events.append({"t_s": float(ts), "event": f"gate {design.gated[gi].name} set to {a:.2f} m"})
        # the fuse
        if fuse_at is None and z >= design.fuse_trigger_m:
            fuse_at = float(ti)
            events.append({"t_s": float(ti), "event": f"fuse spillway breached at {z:.2f} m"})
        q_free = design.free_m * design.free_width_m * SQRT2G * max(z - design.free_crest_m, 0.0) ** 1.5
        q_fuse = 0.0
        if fuse_at is not None:
            frac = min(1.0, (ti - fuse_at) / FUSE_EROSION_S) if FUSE_EROSION_S > 0 else 1.0
            q_fuse = design.fuse_m * frac * design.fuse_width_m * SQRT2G * max(z - design.fuse_sill_m, 0.0) ** 1.5
        # the gates
        openings = np.zeros(ng)
        if mode == "rule":
            ceiling = design.guide_ceiling(start + _dt.timedelta(seconds=float(ti)))
            if z >= design.design_flood_level_m:
                if not emergency:
                    events.append({"t_s": float(ti), "event": f"emergency release: all gates open at {z:.2f} m"})
                emergency = True
                openings[:] = [g.gate_height_m for g in design.gated]
            else:
                if emergency and z < design.design_flood_level_m - 0.2:
                    emergency = False
                want = 0.0
                if z > ceiling:
                    want = q_in[i] + (vol - design.volume(ceiling)) / DRAWDOWN_S
                    want = min(want, safe_release_m3_s)
                want = max(want - q_free - q_fuse, 0.0)
                # share the wanted release between the gated spillways by their design capacity
                caps = np.array([g.design_q_m3_s for g in design.gated])
                for k, g in enumerate(design.gated):
                    openings[k] = g.opening_for(z, want * caps[k] / caps.sum())
        for gi, a in gate_manual.items():
            openings[gi] = min(max(a, 0.0), design.gated[gi].gate_height_m)
        was_open = bool(opn[i - 1].any()) if i > 0 else bool(any(state0.openings_m))
        if openings.any() != was_open:
            events.append({"t_s": float(ti), "event": ("gates opened" if openings.any() else "gates closed")
                           + f" at {z:.2f} m"})
        q_gates = sum(g.discharge(z, openings[k]) for k, g in enumerate(design.gated))
        out = q_free + q_fuse + q_gates
        # never release more than the pool holds above the lowest sill in one step
        avail = (vol - design.volume(min(design.free_crest_m, *(g.sill_m for g in design.gated)))) / dt + q_in[i] \
            if dt > 0 else out
        if extra_out_m3_s is not None:
            out += float(extra_out_m3_s[i])
        out = min(out, max(avail, 0.0))
        level[i], rel[i], free[i], fuse_q[i], opn[i] = z, out, q_free, q_fuse, openings
        vol = max(vol + (q_in[i] - out) * dt, 0.0)
        z = design.level(vol)
        if z > design.dam_crest_m:
            # the pool model does not hold once the dam is overtopped: refuse rather than report a level
            raise ValueError(f"{design.name}: the level reaches {z:.2f} m at t = {ti + dt:g} s, above the dam crest "
                             f"{design.dam_crest_m:g} m: the dam is overtopped and a level pool cannot say what "
                             "follows; study it as a dam break (flood.reservoir.in_grid with a breach)")
    return PoolRun(t, level, rel, q_in, opn, free, fuse_q, fuse_at, events)
