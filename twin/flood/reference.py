"""A pure-numpy implementation of the same local-inertial sub-step as the C++ kernel.

Slow and simple on purpose: it is the reference the kernel is tested against
(``tests/flood/test_reference.py``) and the baseline of ``benchmarks/flood_throughput.py``.
It covers closed boundaries, uniform Manning n and no sources (the dam-break benchmark), and does
the same per-sub-step work as the kernel: fluxes, limiter, continuity, tracked maxima.
"""
from __future__ import annotations

import numpy as np

from twin.constants import GRAVITY as G

DEPTH_THRESHOLD = 1e-3
SPEED_DEPTH = 1e-2
ARRIVAL_DEPTH = 0.1


def _face(eL, eR, hf, qc, qs, qp, n2, g_dt, inv_dx, theta):
    wet = hf > DEPTH_THRESHOLD
    hfs = np.where(wet, hf, 1.0).astype(hf.dtype)
    r7 = hfs ** (-7.0 / 3.0)
    inv_den = 1.0 / (1.0 + g_dt * n2 * np.sqrt(qc * qc + qp * qp) * r7)
    drive = g_dt * hfs * (eR - eL) * inv_dx
    qtheta = theta * qc + 0.5 * (1.0 - theta) * qs
    q = (qtheta - drive) * inv_den
    qb = (qc - drive) * inv_den
    q = np.where(q * (eL - eR) < 0, qb, q)
    return np.where(wet, q, 0.0).astype(hf.dtype)


def inertial_step(z, h, qx, qy, manning, dx, dt, theta, t_end, max_depth, max_speed, arrival_time):
    """One sub-step; returns ``(h_new, qx_new, qy_new, hmax)`` and updates the trackers in place
    (``max_speed`` holds the maximum of speed squared, as in the kernel)."""
    T = h.dtype.type
    g_dt, inv_dx, n2 = T(G * dt), T(1.0 / dx), T(manning) * T(manning)
    dt, dx, theta = T(dt), T(dx), T(theta)
    eta = z + h
    fx = np.zeros_like(qx)
    fy = np.zeros_like(qy)
    # x faces between columns c-1 and c
    eL, eR = eta[:, :-1], eta[:, 1:]
    hf = np.maximum(eL, eR) - np.maximum(z[:, :-1], z[:, 1:])
    qp = T(0.25) * ((qy[:-1, :-1] + qy[:-1, 1:]) + (qy[1:, :-1] + qy[1:, 1:]))
    fx[:, 1:-1] = _face(eL, eR, hf, qx[:, 1:-1], qx[:, :-2] + qx[:, 2:], qp, n2, g_dt, inv_dx, theta)
    # y faces between rows r-1 and r
    eL, eR = eta[:-1, :], eta[1:, :]
    hf = np.maximum(eL, eR) - np.maximum(z[:-1, :], z[1:, :])
    qp = T(0.25) * ((qx[:-1, :-1] + qx[:-1, 1:]) + (qx[1:, :-1] + qx[1:, 1:]))
    fy[1:-1, :] = _face(eL, eR, hf, qy[1:-1, :], qy[:-2, :] + qy[2:, :], qp, n2, g_dt, inv_dx, theta)
    # positivity limiter: scale each cell's outgoing fluxes to the water it holds
    out = (np.maximum(-fx[:, :-1], 0) + np.maximum(fx[:, 1:], 0)) + np.maximum(-fy[:-1, :], 0)
    out = out + np.maximum(fy[1:, :], 0)
    od = out * (dt / dx)
    hc = np.maximum(h, 0)
    fac = np.ones_like(h)
    np.divide(hc, od, out=fac, where=od > hc)
    qxn = np.zeros_like(qx)
    qyn = np.zeros_like(qy)
    f = fx[:, 1:-1]
    qxn[:, 1:-1] = f * np.where(f > 0, fac[:, :-1], fac[:, 1:])
    f = fy[1:-1, :]
    qyn[1:-1, :] = f * np.where(f > 0, fac[:-1, :], fac[1:, :])
    hn = h + (dt / dx) * ((qxn[:, :-1] - qxn[:, 1:]) + (qyn[:-1, :] - qyn[1:, :]))
    # tracked maxima
    first = (max_depth <= ARRIVAL_DEPTH) & (hn > ARRIVAL_DEPTH)
    arrival_time[first] = t_end
    np.maximum(max_depth, hn, out=max_depth)
    wet = hn > SPEED_DEPTH
    inv = np.where(wet, T(0.5) / np.where(wet, hn, 1), 0).astype(h.dtype)
    u = (qxn[:, :-1] + qxn[:, 1:]) * inv
    v = (qyn[:-1, :] + qyn[1:, :]) * inv
    np.maximum(max_speed, u * u + v * v, out=max_speed)  # speed squared, as the kernel
    return hn, qxn, qyn, float(hn.max())


def stable_dt(hmax, dx, alpha=0.5):
    return alpha * dx / np.sqrt(G * max(hmax, DEPTH_THRESHOLD))
