"""The sea strip's cells on the domain's edge are not drained through it.

The sea is a strip of cells held at the tidal stage (docs/design/docs-event-timing-and-sea-strip.md).
Where the strip meets a `free` domain edge, the edge drained the held cells at normal depth every sub-step
and the stage refilled them: on Molave at 100 m ~12,000 m³/s left through the east edge and ~8,500 m³/s
through the north edge, and the run's volume balance booked 803 Mm³ of boundary inflow and 794 Mm³ of
outflow in 12 h against ~24 Mm³ of river inflows and reservoir release. The stage is the sea beyond the
edge: those faces are walls now.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from twin.build import build_twin
from twin.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
FLOOD_ONLY = ["traffic.enabled=false", "people.enabled=false", "services.enabled=false", "interventions=[]",
              "outputs.png=false", "flood.dtype=float64", "resolution_m=100", "duration=1h"]


def test_no_circulation_through_the_edge_where_the_sea_strip_meets_it():
    tw = build_twin(load_scenario(REPO / "scenarios" / "tamky_molave_2020.yaml", FLOOD_ONLY))
    fm = tw.flood
    held = np.zeros(fm.shape, bool)
    for b in fm._cell_bcs:
        if b["kind"] == "stage":
            held[b["rows"], b["cols"]] = True
    assert held[0, :].any() and held[:, -1].any()      # the strip meets the north and east edges
    fm.run_one_step(3600.0)
    qx, qy = (np.asarray(a) for a in fm.face_discharge())
    d = fm.cell_size
    through_strip = (np.abs(qy[0, held[0, :]]).sum() + np.abs(qx[held[:, -1], -1]).sum()) * d
    assert through_strip == 0.0
    # the boundary inflow is the rivers and the reservoir's release, plus what the sea strip gives the land:
    # no longer ~20,000 m³/s of circulation (before: 67 Mm³ in this hour)
    vb = fm.volume_balance()
    scheduled = sum(float(np.mean([inf["series"](t) for t in np.linspace(0, 3600, 61)])) * 3600.0
                    for inf in fm._inflows)
    assert vb["inflow_m3"] < 3.0 * scheduled, (vb["inflow_m3"], scheduled)
    assert vb["relative_error"] < 1e-9
