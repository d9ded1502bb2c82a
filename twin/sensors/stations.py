"""A sensor configuration from a city bundle's gauge places (``gauge_rain``, ``gauge_stage``,
``gauge_tide``): stations at the places, one datastream per gauge, and a default assimilation
section (rain gauges -> IDW rain field). The positions are the bundle's (labelled by their
``source``, e.g. synthetic for Tam Kỳ); edit the file to match the real network."""
from __future__ import annotations

KIND_TO_PROPERTY = {"gauge_rain": ("rain", "rain_rate", "mm/h", 300),
                    "gauge_stage": ("stage", "river_stage", "m", 600),
                    "gauge_tide": ("tide", "tide_level", "m", 600)}


def config_from_city(city) -> dict:
    places = city.places
    gauges = places[places["kind"].isin(list(KIND_TO_PROPERTY))]
    if gauges.empty:
        raise ValueError(f"city {getattr(city, 'name', '?')!r} has no gauge places "
                         f"(kinds {sorted(KIND_TO_PROPERTY)})")
    stations, streams = [], []
    for row in gauges.itertuples(index=False):
        sid = f"place-{row.place_id}"
        prefix, prop, unit, interval = KIND_TO_PROPERTY[row.kind]
        stations.append({"id": sid, "name": str(row.name), "x": float(row.x), "y": float(row.y),
                         "source": str(getattr(row, "source", "") or ""), "place_id": str(row.place_id)})
        streams.append({"id": f"{prefix}-{row.place_id}", "station": sid, "property": prop, "unit": unit,
                        "interval_s": interval})
    cfg: dict[str, object] = {"stations": stations, "datastreams": streams}
    rain = [d["id"] for d in streams if d["property"] == "rain_rate"]
    if rain:
        cfg["assimilation"] = {"rain": {"method": "idw", "power": 2, "max_age_s": 1800, "datastreams": rain}}
    return cfg
