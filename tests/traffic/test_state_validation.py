"""The traffic engine's boundary (issue 14, items 19 and 20).

``TrafficEngine.set_state`` from a damaged checkpoint: before, ``log_cur = -1`` for a trip on a link
wrote before the log array (heap corruption), ``shift = 1e308`` or ``veff = -1`` hung the step, and
counters near their type's maximum overflowed. Now each is a ValueError naming the field, the index
and the value, and the model keeps its state. The constructor's history buffers were sized in int
(UBSan) and unbounded (27 GB for 20 links of 100 m at dt = 1e-6): now an error naming the link.
"""
from __future__ import annotations

import numpy as np
import pytest

from twin import _core
from twin.traffic import TrafficModel

from .helpers import corridor, uniform_trips

pytestmark = pytest.mark.timeout(60)

INT32_MAX = np.iinfo(np.int32).max
INT64_MAX = np.iinfo(np.int64).max


def _running():
    """A corridor with trips on every link and some in the origin queue."""
    m = TrafficModel(corridor([300.0, 300.0, 300.0], 1), dt=1.0)
    m.add_trips(uniform_trips(0, 3, 0.6, 0.0, 120.0))
    m.run_one_step(60.0)
    st = m._engine.get_state()
    assert (st["state"] == 2).sum() >= 3 and st["nveh"].min() >= 1  # trips on every link
    return m, st


def _on_link(st):
    return int(np.flatnonzero(st["state"] == 2)[0])


def _damage(field, value, index=None):
    def edit(st):
        if index is None:
            st[field] = value
        else:
            a = st[field].copy()
            a[index(st) if callable(index) else index] = value
            st[field] = a

    return edit


def _cycle(st):
    """vnext of a link's tail points back at its head: the list loops."""
    l = int(np.argmax(st["nveh"] >= 2))
    v = st["vnext"].copy()
    v[st["tail"][l]] = st["head"][l]
    st["vnext"] = v


@pytest.mark.parametrize(
    "edit, match",
    [
        # item 19 as filed: a heap-buffer-overflow write, two hangs and counter overflows
        (_damage("log_cur", -1, _on_link), r"'log_cur' value -1 at index \d+: a trip on a link must point"),
        (_damage("shift", 1e308, 0), r"'shift' value 1e\+308 at index 0: must be in \[0, "),
        (_damage("veff", -1.0, 1), r"'veff' value -1 at index 1: must be finite and > 0"),
        (_damage("nveh", INT32_MAX, 0), r"'nveh' value 2147483647 at index 0: the list holds \d+ trips"),
        (_damage("exits_total", INT64_MAX, 2), r"'exits_total' value 9223372036854775807: must be in 0\.\."),
        (_damage("n_departed", INT64_MAX), r"'n_departed' value 9223372036854775807"),
        (_damage("n_reroutes", -5), r"'n_reroutes' value -5"),
        # the rest of the standard: lists, indices, times, counts that disagree
        (_cycle, r"'head' value \d+ at index \d+: the list of link \d+ is longer than its count \d+ or loops"),
        (_damage("head_since", np.nan, 0), r"'head_since' value nan at index 0"),
        (_damage("t_ready", np.inf, _on_link), r"'t_ready' value inf"),
        (_damage("Nup", -1.0, 0), r"'Nup' value -1 at index 0"),
        (_damage("hist", np.nan, 3), r"'hist' value nan at index 3"),
        (_damage("last_exit", np.inf, 0), r"'last_exit' value inf at index 0"),
        (_damage("closed_mask", 255, 0), r"'closed_mask' value 255 at index 0"),
        (_damage("state", 9, 0), r"'state' value 9 at index 0"),
        (lambda st: _damage("cur", (st["cur"][_on_link(st)] + 1) % 3, _on_link)(st), r"'cur' value \d+ at index \d+: a trip on a link"),
        (_damage("n_onlink", 0), r"'n_onlink' value 0: \d+ trips are in that state"),
        (_damage("step_k", -3), r"'step_k' value -3: must be in 0\.\."),
        (_damage("startup_lost_s", float("nan")), r"'startup_lost_s' value nan"),
        (_damage("step_k", "soon"), r"'step_k' must be a number"),
        (_damage("pool", 7, 0), r"'pool' value 7 at index 0: out of range 0\.\.2"),
    ],
)
def test_damaged_state_is_a_value_error_naming_the_field(edit, match):
    m, st = _running()
    before = m._engine.get_state()
    edit(st)
    with pytest.raises(ValueError, match=match):
        m._engine.set_state(st)
    after = m._engine.get_state()  # a refused state leaves the model as it was
    for k, v in before.items():
        np.testing.assert_array_equal(np.asarray(after[k]), np.asarray(v), err_msg=k)


def test_valid_state_round_trips_and_continues_bit_identically():
    m, st = _running()
    m.run_one_step(30.0)
    ref = m._engine.get_state()
    m2, _ = _running()
    m2._engine.set_state(st)
    m2.run_one_step(30.0)
    got = m2._engine.get_state()
    for k in ("Nup", "Ndown", "t_ready", "log_tout", "state"):
        np.testing.assert_array_equal(got[k], ref[k])


def test_log_cannot_be_switched_on_with_trips_on_links():
    """Trips on links entered unlogged: switching the log on would make the engine write log_tout[-1]."""
    m = TrafficModel(corridor([300.0, 300.0], 1), dt=1.0, record_links=False)
    m.add_trips(uniform_trips(0, 2, 0.5, 0.0, 60.0))
    m.run_one_step(30.0)
    with pytest.raises(ValueError, match="record: the link log can only be switched on while no trip is on a link"):
        m._engine.record = True
    m.run_one_step(30.0)  # still steps, unlogged
    assert m._engine.record is False


def _engine(n_links, length, dt):
    x = np.arange(n_links + 1, dtype=np.float64) * 100.0
    f = np.zeros(1)
    return _core.TrafficEngine(
        np.arange(n_links, dtype=np.int32), np.arange(1, n_links + 1, dtype=np.int32),
        np.full(n_links, float(length)), np.ones(n_links), np.full(n_links, 13.9), np.full(n_links, 1800.0),
        np.full(n_links, 0.133), x, np.zeros(n_links + 1), np.zeros(n_links + 2, np.int32), f[:0],
        np.zeros(n_links + 1), np.full(n_links, -1, np.int32), dt, np.ones(5),
    )  # fmt: skip


def test_constructor_bounds_the_history_and_names_the_input():
    with pytest.raises(ValueError, match=r"link 0 length_m=1e\+308 with dt=1 .* needs [\d.e+]+ history slots .*the limit is"):
        _engine(1, 1e308, 1.0)
    # 20 links of 100 m at dt = 1e-6 tried to allocate gigabytes
    with pytest.raises(ValueError, match=r"link \d+ length_m=100 with dt=1e-06 .*needs [\d.e+]+ history slots \([\d.]+ MB\)"
                       r".*the network needs [\d.e+]+ slots \([\d.]+ GB\); the limit is 1\.34e\+08 slots"):
        _engine(20, 100.0, 1e-6)
    e = _engine(20, 100.0, 1.0)  # the ordinary case is untouched
    assert e.n_links == 20
