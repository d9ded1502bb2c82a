"""Compare two runs for a decision: headline KPIs with direction and verdict, every other KPI by group,
warnings where the runs do not cover the same thing, and a max-depth difference map on a fixed scale.

Units, directions and the headline order come from one table, :mod:`twin.output.kpi_catalog`; the
warnings from :func:`twin.workflows.compare.run_differences` (the ``twin compare`` command says the
same). Pure functions from runs to data and figures: unit-tested without a browser.
"""
from __future__ import annotations

import numpy as np

from twin.output.kpi_catalog import compare_rows
from twin.workflows.compare import DIFF_HIDE_M, DIFF_SCALE_M, run_differences  # noqa: F401

from .figures import max_depth_grid
from .layers import Layers
from .runs import Run, RunError

#: verdict → (arrow text, CSS class); the word says it, the colour repeats it (never colour alone)
VERDICT_STYLE = {"better": ("better", "verdict-better"), "worse": ("worse", "verdict-worse"),
                 "same": ("no change", "verdict-same"), "changed": ("changed", "verdict-same"),
                 "n/a": ("not in both runs", "verdict-na")}


def decision_kpis(run: Run) -> dict:
    """The run's ``kpis.json``, with ``evacuated_before_water`` computed from ``people.parquet`` for a
    run written before that KPI existed."""
    kp = dict(run.kpis())
    if "evacuated_before_water" not in kp:
        try:
            people = run.table("people")
        except RunError:
            people = None
        if people is not None and len(people):
            from twin.output.kpis import evacuated_before_water

            kp["evacuated_before_water"] = evacuated_before_water(people)
    return kp


def kpi_rows(run_a: Run, run_b: Run) -> list[dict]:
    """:func:`twin.output.kpi_catalog.compare_rows` of two runs (headline first)."""
    return compare_rows(decision_kpis(run_a), decision_kpis(run_b))


def warnings(run_a: Run, run_b: Run) -> list[str]:
    """Where the two runs differ in grid, duration or start time (empty: like for like)."""
    return run_differences(run_a.path, run_b.path)


def arrow(row: dict) -> str:
    """▲ (B higher), ▼ (B lower), = (no change) or '' (missing)."""
    d = row.get("diff")
    if d is None or row["verdict"] == "n/a":
        return ""
    return "=" if row["verdict"] == "same" else ("▲" if d > 0 else "▼")


def headline_summary(rows: list[dict], name_a: str, name_b: str) -> str:
    """One sentence a screen reader (or a hurried reader) gets: how many headline KPIs B improves or worsens."""
    head = [r for r in rows if r["headline"]]
    better = [r["label"] for r in head if r["verdict"] == "better"]
    worse = [r["label"] for r in head if r["verdict"] == "worse"]
    same = sum(r["verdict"] == "same" for r in head)
    missing = sum(r["verdict"] == "n/a" for r in head)
    parts = [f"Against A ({name_a}), B ({name_b}) is better on {len(better)} of {len(head)} headline KPIs"
             + (f" ({'; '.join(better)})" if better else ""),
             f"worse on {len(worse)}" + (f" ({'; '.join(worse)})" if worse else ""),
             f"unchanged on {same}"]
    if missing:
        parts.append(f"{missing} not available in both runs")
    return ", ".join(parts) + "."


# ---------------------------------------------------------------------------------------------
# difference map
# ---------------------------------------------------------------------------------------------
def depth_difference(run_a: Run, run_b: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, B − A max depth [m]) on the runs' common grid; RunError when the grids differ."""
    xa, ya, a = max_depth_grid(run_a)
    xb, yb, b = max_depth_grid(run_b)
    if a.shape != b.shape or not (np.allclose(xa, xb) and np.allclose(ya, yb)):
        raise RunError("the two runs are on different grids: no cell-by-cell difference map")
    return xa, ya, np.nan_to_num(b, nan=0.0) - np.nan_to_num(a, nan=0.0)


def difference_summary(x: np.ndarray, y: np.ndarray, diff: np.ndarray) -> str:
    """The map in words: where B is deeper or shallower by DIFF_HIDE_M or more, and the extremes."""
    cell = abs(float(x[1] - x[0])) * abs(float(y[1] - y[0])) if len(x) > 1 and len(y) > 1 else 0.0
    up, down = diff >= DIFF_HIDE_M, diff <= -DIFF_HIDE_M
    if not up.any() and not down.any():
        return f"No cell's maximum depth differs by {DIFF_HIDE_M * 100:.0f} cm or more between the runs."
    parts = []
    for name, m, fn in (("deeper", up, np.argmax), ("shallower", down, np.argmin)):
        if m.any():
            k = np.unravel_index(fn(diff), diff.shape)
            parts.append(f"B is {name} by {DIFF_HIDE_M * 100:.0f} cm or more on {m.sum() * cell / 1e6:.2f} km² "
                         f"({int(m.sum())} cells; at most {diff[k]:+.2f} m at easting {x[k[1]]:.0f} m, "
                         f"northing {y[k[0]]:.0f} m)")
    beyond = int((np.abs(diff) > DIFF_SCALE_M).sum())
    text = "; ".join(parts) + "."
    if beyond:
        text += f" {beyond} cells change by more than {DIFF_SCALE_M:g} m and show the end colour of the scale."
    return text


def difference_map(run_a: Run, run_b: Run, layers: Layers | None = None, map_id: str = "cmp-diff-leaflet"):
    """Max depth B − A as a dash-leaflet map over the offline basemap (:mod:`twin.dashboard.basemap`):
    fixed classes :data:`~twin.dashboard.basemap.DIFF_EDGES_M` (|Δ| < 5 cm not drawn, the scale capped
    at ±0.5 m), diverging blue (shallower in B) to red (deeper in B), with its legend in text.
    Returns ``(map, legend, summary text)``; RunError when the grids differ."""
    import dash_leaflet as dl

    from . import basemap as bm

    x, y, diff = depth_difference(run_a, run_b)
    overlay = bm.grid_overlay(diff, x, y, bm.DIFF_EDGES_M, bm.DIFF_COLOURS, how="absmax", opacity=0.85)
    extent = layers.extent if layers is not None and layers.extent is not None else bm.grid_extent(x, y)
    children: list = []
    if layers is not None:
        children.append(dl.LayersControl(bm.basemap_layers(layers, prefix="cmp") + [
            dl.Overlay(dl.LayerGroup([overlay]), name="max depth B − A", checked=True)], position="topright"))
    else:
        children.append(overlay)
    # trackViewport off: with bounds and no center, dash-leaflet 1.1.3 reads center.equals of undefined
    m = dl.Map(children=children, id=map_id, style={"height": "460px", "width": "100%"}, trackViewport=False,
               **bm.map_options(extent))
    labels = ["≤ −0.5 m (B shallower)", "−0.5 to −0.3 m", "−0.3 to −0.15 m", "−0.15 to −0.05 m",
              "|Δ| < 0.05 m: not shown", "+0.05 to +0.15 m", "+0.15 to +0.3 m", "+0.3 to +0.5 m",
              "≥ +0.5 m (B deeper)"]
    legend = bm.legend("max depth B − A", bm.DIFF_EDGES_M, bm.DIFF_COLOURS, labels=labels,
                       note="fixed scale in every comparison", id="cmp-diff-legend")
    return m, legend, difference_summary(x, y, diff)


# ---------------------------------------------------------------------------------------------
# replicates (twin compare --replicates N): each difference with its interval
# ---------------------------------------------------------------------------------------------
REPLICATES_FILE = "compare_replicates.json"


def replicate_sets(runs_dir) -> list[str]:
    """Folders of the runs folder holding a ``compare_replicates.json`` (``twin compare --replicates
    N --out RUNS/NAME``): not hidden, confined to the runs folder like run folders."""
    from pathlib import Path

    from .runs import _confined, _listed

    root = Path(runs_dir)
    listed = _listed(root)
    if not listed:
        return []
    out = []
    for n in listed[1]:
        f = root / n / REPLICATES_FILE
        if not n.startswith(".") and f.is_file() and not f.is_symlink() and _confined(root / n, listed[0]):
            out.append(n)
    return out


def replicate_rows(runs_dir, name) -> tuple[dict, list[dict]]:
    """(the comparison's header fields, its ``decision_rows``) for set ``name`` of :func:`replicate_sets`;
    RunError for anything else (a path, a name not in the list) or a file without decision rows."""
    from pathlib import Path

    from .runs import UNKNOWN_RUN, read_json

    if not isinstance(name, str) or name not in replicate_sets(runs_dir):
        raise RunError(UNKNOWN_RUN)
    path = Path(runs_dir) / name / REPLICATES_FILE
    res = read_json(path)
    if not isinstance(res, dict):
        raise RunError(f"{path}: expected a JSON object, found {type(res).__name__}")
    rows = res.get("decision_rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise RunError(f"{path}: no decision_rows (written before the KPI catalog); rerun twin compare --replicates")
    head = {k: res.get(k) for k in ("scenario_a", "scenario_b", "replicates", "level")}
    return head, rows
