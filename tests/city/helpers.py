"""Helpers for the city tests (not a conftest: import them explicitly)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio


def write_osm_grid(path: Path, lon0: float, lat0: float, *, n: int = 6, step_deg: float = 0.004,
                   names=("Phan Châu Trinh", "Hùng Vương", "Trần Cao Vân", "Lê Lợi", "Nguyễn Hoàng", "Huỳnh Thúc Kháng")) -> Path:
    """A HAND-MADE fixture in OSM XML format (not OpenStreetMap data): an n × n street grid from
    (lon0, lat0), primary streets east-west and residential ones north-south, two-way."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="tamky-twin test fixture">']
    nid = lambda i, j: 1000 + i * n + j  # noqa: E731
    for i in range(n):
        for j in range(n):
            lines.append(f'<node id="{nid(i, j)}" version="1" lat="{lat0 + i * step_deg:.7f}" lon="{lon0 + j * step_deg:.7f}"/>')
    way = 1
    for i in range(n):   # east-west
        refs = "".join(f'<nd ref="{nid(i, j)}"/>' for j in range(n))
        lines.append(f'<way id="{way}" version="1">{refs}<tag k="highway" v="primary"/>'
                     f'<tag k="name" v="{names[i % len(names)]}"/><tag k="lanes" v="2"/></way>')
        way += 1
    for j in range(n):   # north-south
        refs = "".join(f'<nd ref="{nid(i, j)}"/>' for i in range(n))
        lines.append(f'<way id="{way}" version="1">{refs}<tag k="highway" v="residential"/></way>')
        way += 1
    lines.append("</osm>")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def crop_geotiff(src: Path, dst: Path, rows: slice, cols: slice) -> Path:
    """A window of a GeoTIFF, written as a new GeoTIFF with its CRS and transform."""
    with rasterio.open(src) as s:
        a = s.read(1)[rows, cols].copy()
        t = s.transform @ rasterio.Affine.translation(cols.start, rows.start)
        prof = s.profile | {"width": a.shape[1], "height": a.shape[0], "transform": t}
    with rasterio.open(dst, "w", **prof) as out:
        out.write(np.asarray(a), 1)
    return dst
