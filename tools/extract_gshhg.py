#!/usr/bin/env python3
"""Extract the real GSHHG coastline and WDBII rivers around Tam Kỳ into a small GeoJSON.

Needs Debian's ``gmt`` and ``gmt-gshhg-full`` (LGPL-3, GSHHG 2.3.x by Wessel & Smith).  Run once by a
maintainer; the output is shipped in ``twin/data/tamky/sources/`` so that ``make demo``/``make test``
never need gmt::

    python tools/extract_gshhg.py            # writes twin/data/tamky/sources/gshhg_coast_rivers.geojson

Exactly these commands are run (full resolution, region 108.3–108.7 E, 15.4–15.75 N)::

    gmt coast -R108.3/108.7/15.4/15.75 -Df -W -M     # shorelines (level 1 = land/ocean, 2 = lakes)
    gmt coast -R108.3/108.7/15.4/15.75 -Df -Ia -M    # all WDBII rivers and canals

River segments are returned per GSHHG bin (larger than the region) and are clipped to the region.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REGION = (108.3, 108.7, 15.4, 15.75)
OUT = Path(__file__).resolve().parents[1] / "twin" / "data" / "tamky" / "sources" / "gshhg_coast_rivers.geojson"


def _segments(args: list[str]) -> list[tuple[str, list[list[float]]]]:
    with tempfile.TemporaryDirectory() as tmp:   # gmt writes gmt.history into its working directory
        text = subprocess.run(["gmt", "coast", *args], check=True, capture_output=True, text=True, cwd=tmp).stdout
    segs: list[tuple[str, list[list[float]]]] = []
    header, pts = "", []
    for line in text.splitlines():
        if line.startswith(">"):
            if len(pts) >= 2:
                segs.append((header, pts))
            header, pts = line[1:].strip(), []
        elif line.strip():
            lon, lat = (float(v) for v in line.split()[:2])
            pts.append([round(lon, 6), round(lat, 6)])
    if len(pts) >= 2:
        segs.append((header, pts))
    return segs


def _clip(pts: list[list[float]]) -> list[list[list[float]]]:
    """Split a polyline into the runs of vertices inside REGION."""
    w, e, s, n = REGION
    runs, cur = [], []
    for p in pts:
        if w <= p[0] <= e and s <= p[1] <= n:
            cur.append(p)
        else:
            if len(cur) >= 2:
                runs.append(cur)
            cur = []
    if len(cur) >= 2:
        runs.append(cur)
    return runs


def main() -> int:
    r = "-R{}/{}/{}/{}".format(*REGION)
    version = subprocess.run(["gmt", "--version"], capture_output=True, text=True).stdout.strip()
    feats = []
    for header, pts in _segments([r, "-Df", "-W", "-M"]):
        level = int(re.search(r"Level (\d+)", header).group(1))
        feats.append({"type": "Feature", "properties": {"kind": "shoreline", "gshhg_level": level},
                      "geometry": {"type": "LineString", "coordinates": pts}})
    for header, pts in _segments([r, "-Df", "-Ia", "-M"]):
        level = int(re.search(r"Level (\d+)", header).group(1))
        for run in _clip(pts):
            feats.append({"type": "Feature", "properties": {"kind": "river", "wdbii_level": level},
                          "geometry": {"type": "LineString", "coordinates": run}})
    fc = {"type": "FeatureCollection",
          "name": "gshhg_coast_rivers_tamky",
          "source": f"GSHHG/WDBII full resolution via GMT {version} (gmt coast {r} -Df -W -M / -Ia -M)",
          "licence": "LGPL-3.0-or-later (GSHHG, Wessel & Smith)",
          "features": feats}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fc, ensure_ascii=False, separators=(",", ":")))
    print(f"wrote {OUT} ({len(feats)} features)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
