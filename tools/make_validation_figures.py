"""Draw the validation figures of docs/validation.md into docs/figures/ (small PNGs, matplotlib Agg).

    PYTHONPATH=. python tools/make_validation_figures.py            # every figure
    PYTHONPATH=. python tools/make_validation_figures.py fv_stoker  # only some (names without .png)

Each figure re-runs the set-up of one validation test (same geometry, parameters and analytic
solution as the test named in its title; a coarser grid only where the caption in
docs/validation.md says so) and plots the model against the reference. The tests hold the
tolerances; these pictures show what is being compared. About a minute on two cores.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "figures"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fv.analytic import ritter, stoker, thacker_bed, thacker_period, thacker_planar  # noqa: E402

G = 9.81
FIGSIZE = (5.6, 3.0)
DPI = 80


def _save(fig, name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})  # no version string: stable bytes
    plt.close(fig)
    return path


def _cells(a, b, n):
    dx = (b - a) / n
    return a + (np.arange(n) + 0.5) * dx


def _strip(x, h0, z=None, order=1, **kw):
    from twin.flood.fv import FVSolver

    z = np.zeros_like(x) if z is None else z
    s = FVSolver(z.reshape(1, -1), float(x[1] - x[0]), 0.0, order=order, **kw)
    s.set_state(h0.reshape(1, -1))
    return s


# --------------------------------------------------------------------------------------------
# flood, local inertial (tests/flood/test_flood_validation.py)
# --------------------------------------------------------------------------------------------
def flood_hunter_2005():
    """test_moving_front_on_rough_plane_hunter_2005: dx = 10 m, n = 0.03, u = 1 m/s, 1 h."""
    from twin import FloodModel, Terrain

    def exact(x, t, u=1.0, n=0.03):
        arg = -7.0 / 3.0 * n**2 * u**2 * (x - u * t)
        return np.where(arg > 0, np.abs(arg) ** (3.0 / 7.0), 0.0)

    dx, L, ny = 10.0, 5000.0, 3
    nx = int(L / dx)
    m = FloodModel(Terrain.from_array(np.zeros((ny, nx)), dx), manning=0.03)
    times = np.linspace(0.0, 3600.0, 361)
    m.add_inflow([(r, 0) for r in range(ny)], hydrograph=(times, exact(0.0, times) * ny * dx))
    x = (np.arange(nx) + 0.5) * dx
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for k in range(6):
        m.run_one_step(600.0)
        t = 600.0 * (k + 1)
        if k % 2 == 1:
            ax.plot(x, exact(x, t), "k-", lw=1)
            ax.plot(x[::8], m.depth.mean(axis=0)[::8], "o", ms=3, label=f"model, t = {t / 3600:.2g} h")
    ax.plot([], [], "k-", lw=1, label="Hunter et al. (2005)")
    ax.set(xlim=(0, 4000), xlabel="x [m]", ylabel="depth [m]",
           title="Moving front on a rough plane (local inertial)")
    ax.legend(fontsize=7)
    return _save(fig, "flood_hunter_2005")


def flood_ea_test4():
    """EA Test 4 geometry (test_ea_test4_front_arrival_monotone_balanced_and_symmetric) at 10 m."""
    from twin import FloodModel, Terrain

    dx = 10.0
    ny, nx = int(2000 / dx), int(1000 / dx)
    t = Terrain.from_array(np.zeros((ny, nx)), dx, origin=(0.0, 2000.0))
    m = FloodModel(t, manning=0.05)
    mid, k = ny // 2, int(round(20.0 / dx))
    m.add_inflow([(r, 0) for r in range(mid - k // 2, mid + k // 2)],
                 hydrograph=([0.0, 3600.0, 10800.0, 19800.0], [0.0, 20.0, 20.0, 0.0]))
    for _ in range(10):
        m.run_one_step(1800.0)
    pts = [(50, 1000), (100, 1000), (200, 1000), (300, 1000), (400, 1000), (300, 1300)]
    dist = [np.hypot(x, y - 1000.0) for x, y in pts]
    arr = [m.arrival_time[t.rowcol(x, y)] / 3600.0 for x, y in pts]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(5.6, 3.4), gridspec_kw={"width_ratios": [1, 1.6]})
    im = a1.imshow(np.where(m.depth > 0.01, m.depth, np.nan), cmap="cividis_r",
                   extent=(0, 1000, 0, 2000), aspect="equal")  # row 0 = north edge (y = 2000 m)
    a1.plot([x for x, _ in pts], [y for _, y in pts], "r+", ms=6)
    a1.set(xlabel="x [m]", ylabel="y [m]", title="depth after 5 h [m]")
    fig.colorbar(im, ax=a1, shrink=0.9)
    a2.plot(dist, arr, "o-")
    a2.set(xlabel="distance from inflow [m]", ylabel="arrival of 0.1 m [h]", title="arrival is monotone")
    fig.suptitle("EA Test 4 geometry (10 m cells)", fontsize=9)
    return _save(fig, "flood_ea_test4")


# --------------------------------------------------------------------------------------------
# finite volumes (tests/fv/test_fv_kernel.py)
# --------------------------------------------------------------------------------------------
def fv_stoker():
    """test_stoker_wet_dam_break: h_L 10 m, h_R 1 m, 800 cells of 1.25 m, t = 20 s."""
    x = _cells(-500.0, 500.0, 800)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(x, stoker(x, 20.0, 10.0, 1.0)[0], "k-", lw=1.2, label="Stoker (exact)")
    for order, style in ((1, "--"), (2, ":")):
        s = _strip(x, np.where(x < 0, 10.0, 1.0), order=order)
        s.advance(20.0)
        ax.plot(x, s.h[0], style, lw=1.2, label=f"fv order {order}")
    ax.set(xlim=(-300, 300), xlabel="x [m]", ylabel="depth [m]", title="Wet-bed dam break (Stoker), t = 20 s")
    ax.legend(fontsize=7)
    return _save(fig, "fv_stoker")


def fv_ritter():
    """test_ritter_dry_dam_break_*: h0 10 m on a dry bed, 2 200 cells of 0.25 m, t = 15 s."""
    x = _cells(-200.0, 350.0, 2200)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(x, ritter(x, 15.0, 10.0)[0], "k-", lw=1.2, label="Ritter (exact)")
    for order, style, cfl in ((1, "--", 0.9), (2, ":", None)):
        s = _strip(x, np.where(x < 0, 10.0, 0.0), order=order, h_dry=1e-8, cfl=cfl)
        s.advance(15.0)
        ax.plot(x, s.h[0], style, lw=1.2, label=f"fv order {order}")
    front = 2 * np.sqrt(G * 10.0) * 15.0 - 3 * np.sqrt(G * 0.01) * 15.0
    ax.axvline(front, color="grey", lw=0.8, label="exact 0.01 m front")
    ax.set(xlim=(-200, 320), xlabel="x [m]", ylabel="depth [m]", title="Dry-bed dam break (Ritter), t = 15 s")
    ax.legend(fontsize=7)
    return _save(fig, "fv_ritter")


def fv_thacker():
    """test_thacker_planar_oscillation: D0 4 m, L 10 m, A 2 m, 300 cells of 0.1 m, one period."""
    x = _cells(-15.0, 15.0, 300)
    z = thacker_bed(x)
    T = thacker_period()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.fill_between(x, z, -4.5, color="0.85", label="bed")
    he = thacker_planar(x, T)[0]
    ax.plot(x, np.where(he > 0, he + z, np.nan), "k-", lw=1.2, label="Thacker (exact)")
    for order, style in ((1, "--"), (2, ":")):
        s = _strip(x, thacker_planar(x, 0.0)[0], z=z, order=order)
        s.advance(T)
        h = s.h[0]
        ax.plot(x, np.where(h > 1e-3, h + z, np.nan), style, lw=1.2, label=f"fv order {order}")
    ax.set(xlim=(-13, 13), ylim=(-4.5, 1.5), xlabel="x [m]", ylabel="stage [m]",
           title=f"Planar oscillation in a parabolic basin, t = T = {T:.2f} s")
    ax.legend(fontsize=7, loc="upper center")
    return _save(fig, "fv_thacker")


# --------------------------------------------------------------------------------------------
# traffic (tests/traffic/test_validation.py)
# --------------------------------------------------------------------------------------------
def traffic_bottleneck():
    """test_bottleneck_queue_tail_speed_and_spillback_bound: 40 links of 100 m, 2 lanes, into a
    1-lane bottleneck; 3,000 veh/h for 50 min; the queue tail moves upstream at -1.53 m/s."""
    from twin.roads import RoadNetwork
    from twin.traffic import TrafficModel

    vf, kj, w = 50 / 3.6, 1 / 7.5, 7.5
    qcap = vf * w * kj / (vf + w)
    n = 40
    lengths = np.array([100.0] * n + [1000.0, 500.0])
    lanes = np.array([2] * n + [1, 1], dtype=float)
    x = np.concatenate([[0.0], np.cumsum(lengths)])
    net = RoadNetwork.from_frames(
        pd.DataFrame({"id": np.arange(len(x)), "x": x, "y": 0.0}),
        pd.DataFrame({"from": np.arange(n + 2), "to": np.arange(1, n + 3), "length_m": lengths,
                      "lanes": lanes, "free_speed_mps": vf}))
    q_in = 3000 / 3600
    k = int(round(3000 * q_in))
    tm = TrafficModel(net)
    tm.add_trips(pd.DataFrame({"origin": 0, "destination": n + 2, "depart_s": (np.arange(k) + 0.5) / q_in,
                               "vehicle_class": "car"}))
    occ = []
    for _ in range(2400):
        tm.run_one_step(1.0)
        occ.append(tm.link_pcu_density[:n] / lanes[:n])
    occ = np.array(occ)
    k_up, k_q = q_in / vf, 2 * kj - qcap / w
    speed = (qcap - q_in) / (k_q - k_up)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    im = ax.imshow(occ.T, origin="lower", aspect="auto", cmap="viridis", extent=(0, 2400, 0, 100 * n),
                   vmin=0, vmax=kj)
    fig.colorbar(im, ax=ax, label="density [veh/m/lane]")
    # the theoretical tail: starts at the bottleneck when the first vehicles queue there
    t_hit = np.flatnonzero(occ[:, n - 1] > 0.5 * (k_up / 2 + k_q / 2))
    t0 = float(t_hit[0]) if len(t_hit) else 300.0
    ts = np.linspace(t0, 2400, 50)
    ax.plot(ts, 100 * n + speed * (ts - t0), "w--", lw=1.2, label=f"LWR tail {speed:.2f} m/s")
    ax.set(xlim=(0, 2400), ylim=(0, 100 * n), xlabel="t [s]", ylabel="x [m]",
           title="Queue behind a 2→1 lane bottleneck")
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, "traffic_bottleneck")


FIGURES: dict[str, Callable[[], Path]] = {
    "flood_hunter_2005": flood_hunter_2005,
    "flood_ea_test4": flood_ea_test4,
    "fv_stoker": fv_stoker,
    "fv_ritter": fv_ritter,
    "fv_thacker": fv_thacker,
    "traffic_bottleneck": traffic_bottleneck,
}


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        print(f"unknown figure(s) {unknown}; choose from {list(FIGURES)}", file=sys.stderr)
        return 2
    for name in names:
        path = FIGURES[name]()
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} kB)")
    total = sum(p.stat().st_size for p in OUT.glob("*.png"))
    print(f"docs/figures/: {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
