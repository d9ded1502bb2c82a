"""The node model kernel (Tampère et al. 2011) on hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from twin._core import traffic_node_model


def flows(S, C, R):
    return traffic_node_model(np.asarray(S, float), np.asarray(C, float), np.asarray(R, float))


def test_diverge_fifo_scales_all_turns():
    # one incoming link, 50/50 to two exits; exit 0 takes 300 of the 500 it is sent: the whole
    # link is held to 300/500, so exit 1 gets 300 too, not 500 (FIFO)
    q = flows([[500.0, 500.0, 0.0]], [1000.0], [300.0, 2000.0])
    assert q[0] == pytest.approx(600.0)


def test_two_in_two_out_by_hand():
    # in 1: 1000 split 50/50 to A and B; in 2: 1000 all to A; R_A = 800, R_B = 1000, capacities 1000.
    # a_A = 800 / (500 + 1000) = 0.533 is the most restrictive; both incoming are supply-constrained:
    # q_1 = q_2 = 0.533 x 1000, A receives exactly 800, B only 266.7 (FIFO behind A)
    S = [[500.0, 500.0, 0.0], [1000.0, 0.0, 0.0]]
    q = flows(S, [1000.0, 1000.0], [800.0, 1000.0])
    assert q == pytest.approx([1600 / 3, 1600 / 3])


def test_demand_constrained_link_takes_its_demand_first():
    # in 1 sends only 100 (below its share of A); in 2 takes the rest of A's supply
    S = [[100.0, 0.0, 0.0], [1000.0, 0.0, 0.0]]
    q = flows(S, [1000.0, 1000.0], [600.0, 1000.0])
    assert q == pytest.approx([100.0, 500.0])


@pytest.mark.parametrize("dA, dB", [(300.0, 200.0), (900.0, 900.0), (200.0, 900.0), (900.0, 100.0)])
def test_merge_is_daganzo(dA, dB):
    cA, cB, R = 2000.0, 1000.0, 1000.0
    q = flows([[dA, 0.0], [dB, 0.0]], [cA, cB], [R])
    pA = cA / (cA + cB)
    if dA + dB <= R:
        expected = [dA, dB]
    elif dA >= pA * R and dB >= (1 - pA) * R:
        expected = [pA * R, (1 - pA) * R]
    elif dA < pA * R:
        expected = [dA, R - dA]
    else:
        expected = [R - dB, dB]
    assert q == pytest.approx(expected)
    assert q.sum() <= R + 1e-9


def test_arrivals_are_never_supply_constrained():
    q = flows([[0.0, 0.0, 400.0]], [1000.0], [0.0, 0.0])
    assert q[0] == pytest.approx(400.0)


def test_validation():
    with pytest.raises(ValueError, match="priority"):
        flows([[1.0, 0.0]], [0.0], [1.0])
    with pytest.raises(ValueError, match="receiving"):
        flows([[1.0, 0.0]], [1.0], [1.0, 2.0])
