"""Small geographic helpers shared by the rooms: name matching and coordinates into the twin's CRS.

    >>> normalise_name("Bệnh viện Đa khoa Quảng Nam")
    'benh vien da khoa quang nam'
    >>> to_utm([500000.0, 1700000.0], "EPSG:32649").tolist()
    [[500000.0, 1700000.0]]
"""
from __future__ import annotations

import unicodedata

import numpy as np

__all__ = ["TWIN_CRS", "normalise_name", "to_utm"]

#: the twin's working CRS: WGS 84 / UTM zone 49N (Quảng Nam), metres
TWIN_CRS = "EPSG:32649"


def normalise_name(s) -> str:
    """A name for matching: without diacritics (``đ`` -> ``d``), lower case, ``_`` as a space, trimmed."""
    s = unicodedata.normalize("NFKD", str(s).replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in s if not unicodedata.combining(ch)).lower().replace("_", " ").strip()


def _crs_key(crs) -> str:
    return str(crs).upper().replace(" ", "")


def to_utm(xy, crs, dst_crs: str = TWIN_CRS) -> np.ndarray:
    """Points ``xy`` (one ``(x, y)`` or a list of them) given in ``crs`` as an ``(n, 2)`` array in ``dst_crs``.

    Already in ``dst_crs``: the points come back unchanged (as floats). Otherwise pyproj transforms
    them (``always_xy``: longitude first for EPSG:4326).
    """
    arr = np.atleast_2d(np.asarray(xy, dtype=float))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"xy: expected (x, y) or a list of (x, y) points, got shape {np.shape(xy)}")
    if _crs_key(crs) == _crs_key(dst_crs):
        return arr
    from pyproj import Transformer
    from pyproj.exceptions import CRSError

    try:
        tr = Transformer.from_crs(crs, dst_crs, always_xy=True)
    except CRSError as exc:
        raise ValueError(f"crs: cannot transform from {crs!r} to {dst_crs!r} ({exc})") from None
    x, y = tr.transform(arr[:, 0], arr[:, 1])
    out = np.column_stack([x, y])
    bad = ~np.isfinite(out).all(axis=1) & np.isfinite(arr).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"xy: point ({arr[k, 0]!r}, {arr[k, 1]!r}) in {crs} has no position in {dst_crs} "
                         "(wrong CRS or axis order?)")
    return out
