"""Checkpoints are data only (npz + JSON, no pickle): exact round trip, refusal of anything else."""
from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

from twin.output.state_io import CheckpointError, load_state, save_state


def test_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(3)
    r = random.Random(5)
    state = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "f": 0.1, "inf": float("inf"), "nan": float("nan"),
             "i": 2**70, "t": (1, "x", None), "nested": [{"k": np.int64(7), "b": np.bool_(True)}],
             "ints": {3: "three", 1: (2.5, -np.inf)}, "rng": rng.bit_generator.state, "random": r.getstate(),
             "obj": np.array(["a", None, "c"], dtype=object), "s": {4, 2}, "__weird": 1, "empty": np.zeros((0, 3))}
    save_state(tmp_path / "s.npz", state)
    back = load_state(tmp_path / "s.npz")
    assert back["a"].dtype == np.float32 and np.array_equal(back["a"], state["a"])
    assert back["f"] == 0.1 and back["inf"] == float("inf") and np.isnan(back["nan"]) and back["i"] == 2**70
    assert back["t"] == (1, "x", None) and back["ints"] == {3: "three", 1: (2.5, -np.inf)}
    assert isinstance(back["nested"][0]["k"], np.int64) and back["nested"][0]["b"] is np.True_
    g = np.random.default_rng()
    g.bit_generator.state = back["rng"]
    assert g.random() == rng.random()
    r2 = random.Random()
    r2.setstate(back["random"])
    assert r2.random() == r.random()
    assert list(back["obj"]) == ["a", None, "c"] and back["s"] == {2, 4} and back["__weird"] == 1
    assert back["empty"].shape == (0, 3)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04trunc", b"random bytes \x00\xff" * 50])
def test_damaged_files_are_refused_with_the_file_named(tmp_path, content):
    p = tmp_path / "ckpt-000000001.npz"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match="ckpt-000000001.npz"):
        load_state(p)


def test_a_pickle_is_never_opened(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    p = tmp_path / "ckpt-000000001.pkl"
    p.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError, match="pickled checkpoint"):
        load_state(p)
    q = tmp_path / "x.npz"
    np.savez(q, __state__=np.array([Boom()], dtype=object))  # a pickled member inside an npz
    with pytest.raises(CheckpointError, match="damaged"):
        load_state(q)


def test_foreign_and_newer_versions_are_refused(tmp_path):
    import json

    for doc, msg in (({"format": "other", "version": 1, "state": {}}, "not a Tam Kỳ Twin checkpoint"),
                     ({"format": "tamky-twin-state", "version": 99, "state": {}}, "version 99")):
        p = tmp_path / "c.npz"
        np.savez(p, __state__=np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8))
        with pytest.raises(CheckpointError, match=msg):
            load_state(p)
    np.savez(tmp_path / "d.npz", x=np.zeros(3))
    with pytest.raises(CheckpointError, match="no __state__"):
        load_state(tmp_path / "d.npz")


def test_unknown_types_are_refused_at_write(tmp_path):
    with pytest.raises(TypeError, match=r"state\.f: cannot store a function"):
        save_state(tmp_path / "x.npz", {"f": lambda: 1})
