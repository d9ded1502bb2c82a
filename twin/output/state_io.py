"""Checkpoint files that are data only: NumPy ``.npz`` (``allow_pickle=False``) plus JSON.

A simulation state is a tree of dicts, lists, tuples, numbers, strings and NumPy arrays. It is
written as one ``.npz`` archive: every array is a member of its own (``a0``, ``a1``, ...), and the
tree — with arrays replaced by references and the few Python types JSON lacks spelled out (tuples,
non-string keys, sets, non-finite floats, NumPy scalars) — is the UTF-8 JSON member ``__state__``.
Reading never unpickles, so opening someone else's run folder cannot execute code; an archive of
another format or version is refused with a message naming the file and what it holds.

Versioned: ``FORMAT_VERSION`` is stored in the file; a reader refuses a newer version and files
without the marker (older pickled checkpoints: ``ckpt-*.pkl`` are never opened).
"""
from __future__ import annotations

import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["save_state", "load_state", "FORMAT", "FORMAT_VERSION", "CheckpointError"]

FORMAT = "tamky-twin-state"
FORMAT_VERSION = 1
_MAX_JSON_BYTES = 512 * 1024 * 1024


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read: damaged, foreign, or of another version."""


def _encode(obj: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int) and not isinstance(obj, np.integer):
        return obj
    if isinstance(obj, float) and not isinstance(obj, np.floating):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "O":
            items = obj.tolist()
            if not all(v is None or isinstance(v, str) for v in np.ravel(obj).tolist()):
                raise TypeError(f"{path}: object array with non-string items cannot be stored")
            return {"__objarray__": items, "shape": list(obj.shape)}
        key = f"a{len(arrays)}"
        arrays[key] = np.ascontiguousarray(obj)
        return {"__nd__": key}
    if isinstance(obj, np.generic):
        v = obj.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = repr(v)
        return {"__scalar__": obj.dtype.str, "v": v}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, arrays, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return {"__set__": [_encode(v, arrays, f"{path}{{}}") for v in sorted(obj)]}
    if isinstance(obj, Path):
        return {"__path__": str(obj)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, arrays, f"{path}.{k}") for k, v in obj.items()}
        return {"__dict__": [[_encode(k, arrays, f"{path}<key>"), _encode(v, arrays, f"{path}[{k!r}]")]
                             for k, v in obj.items()]}
    raise TypeError(f"{path}: cannot store a {type(obj).__name__} in a checkpoint (data only)")


def _decode(obj: Any, arrays: Any) -> Any:
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__nd__" in obj:
        return np.array(arrays[obj["__nd__"]])
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__scalar__" in obj:
        v = obj["v"]
        return np.dtype(obj["__scalar__"]).type(float(v) if isinstance(v, str) else v)
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    if "__set__" in obj:
        return {_decode(v, arrays) for v in obj["__set__"]}
    if "__path__" in obj:
        return Path(obj["__path__"])
    if "__objarray__" in obj:
        a = np.empty(len(obj["__objarray__"]), dtype=object)
        a[:] = obj["__objarray__"]
        return a.reshape(obj["shape"]) if obj["shape"] else a
    if "__dict__" in obj:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__dict__"]}
    return {k: _decode(v, arrays) for k, v in obj.items()}


def save_state(path: str | Path, state: dict) -> Path:
    """Write ``state`` atomically to ``path`` (``.npz``)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(state, arrays, "state")
    doc = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "state": tree}, allow_nan=False)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, __state__=np.frombuffer(doc.encode("utf-8"), dtype=np.uint8), **arrays)
    os.replace(tmp, path)
    return path


def load_state(path: str | Path) -> dict:
    """Read a state written by :func:`save_state`; :class:`CheckpointError` names the file and the
    problem for anything else (a truncated, empty, random, pickled or newer-version file)."""
    path = Path(path)
    if path.suffix == ".pkl":
        raise CheckpointError(f"{path}: a pickled checkpoint of an older version; it is not opened (unpickling "
                              "can execute code). Re-run the scenario with this version")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if not zipfile.is_zipfile(io.BytesIO(raw)):
            raise CheckpointError(f"{path}: not a checkpoint (not an .npz archive; {len(raw)} bytes)")
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            if "__state__" not in npz.files:
                raise CheckpointError(f"{path}: not a Tam Kỳ Twin checkpoint (no __state__ member)")
            blob = npz["__state__"]
            if blob.dtype != np.uint8 or blob.size > _MAX_JSON_BYTES:
                raise CheckpointError(f"{path}: damaged checkpoint (bad __state__ member)")
            doc = json.loads(blob.tobytes().decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a Tam Kỳ Twin checkpoint (format {doc.get('format')!r})"
                                      if isinstance(doc, dict) else f"{path}: damaged checkpoint")
            if doc.get("version") != FORMAT_VERSION:
                raise CheckpointError(f"{path}: checkpoint format version {doc.get('version')!r}; this version "
                                      f"reads version {FORMAT_VERSION} only")
            arrays = {k: npz[k] for k in npz.files if k != "__state__"}
            state = _decode(doc["state"], arrays)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: damaged checkpoint (the state is not a mapping)")
    return state
