"""The output tables (twin.output.tables) on a twin without the component a table reads: a ValueError naming
the table and the component (before: an AttributeError on None deep in the table)."""
from __future__ import annotations

import numpy as np
import pytest

from twin import Terrain
from twin.build import Twin
from twin.output import tables


def test_tables_name_the_component_a_twin_lacks():
    tw = Twin(scenario=None, city=None, terrain=Terrain.from_array(np.zeros((4, 4)), 10.0))  # type: ignore[arg-type]
    cases = [(lambda: tables.links_table(tw, 0.0), "links_table", "traffic"),
             (lambda: tables.trips_table(tw), "trips_table", "traffic"),
             (lambda: tables.people_table(tw, 0.0), "people_table", "people"),
             (lambda: tables.people_state_counts(tw), "people_state_counts", "people"),
             (lambda: tables.incidents_table(tw), "incidents_table", "services"),
             (lambda: tables.units_table(tw, 0.0), "units_table", "services"),
             (lambda: tables.free_flow_times(tw, np.zeros(1), np.zeros(1)), "free_flow_times", "road network")]
    for call, table, component in cases:
        with pytest.raises(ValueError, match=f"{table}: this twin has no {component}"):
            call()
