"""Outputs of a run: schedules, recorders, writers, KPIs, damage, checkpoints."""
from twin.output.schedules import (  # noqa: F401
    AndSchedule,
    IterationInterval,
    OrSchedule,
    Schedule,
    SpecifiedTimes,
    TimeInterval,
    WallTimeInterval,
)

RUN_FILES = ("manifest.json", "scenario.yaml", "kpis.json", "fields.nc", "max_depth.tif",
             "trips.parquet", "people.parquet", "incidents.parquet", "links.parquet", "unit_actions.parquet",
             "units.parquet")
