"""Analytical shallow-water solutions used by the finite-volume validation tests."""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

G = 9.81


def stoker(x, t, h_left, h_right, x0=0.0, g=G):
    """Wet-bed dam break (Stoker 1957): depth and velocity at positions x, time t > 0."""
    cl, cr = np.sqrt(g * h_left), np.sqrt(g * h_right)

    def f(cm):
        return -8 * g * h_right * cm**2 * (cl - cm) ** 2 + (cm**2 - g * h_right) ** 2 * (cm**2 + g * h_right)

    cm = brentq(f, cr * (1 + 1e-12), cl * (1 - 1e-12), xtol=1e-14)
    hm, um = cm**2 / g, 2 * (cl - cm)
    s = 2 * cm**2 * (cl - cm) / (cm**2 - g * h_right)  # shock speed
    xi = (np.asarray(x, float) - x0) / t
    h = np.where(xi <= -cl, h_left, np.where(xi <= 2 * cl - 3 * cm, (2 * cl - xi) ** 2 / (9 * g),
                                             np.where(xi <= s, hm, h_right)))
    u = np.where(xi <= -cl, 0.0, np.where(xi <= 2 * cl - 3 * cm, 2 * (cl + xi) / 3, np.where(xi <= s, um, 0.0)))
    return h, u, x0 + s * t


def ritter(x, t, h0, x0=0.0, g=G):
    """Dry-bed dam break (Ritter 1892): depth and velocity; the front is at x0 + 2 sqrt(g h0) t."""
    c = np.sqrt(g * h0)
    xi = (np.asarray(x, float) - x0) / t
    h = np.where(xi <= -c, h0, np.where(xi <= 2 * c, (2 * c - xi) ** 2 / (9 * g), 0.0))
    u = np.where(xi <= -c, 0.0, np.where(xi <= 2 * c, 2 * (c + xi) / 3, 0.0))
    return h, u


def thacker_planar(x, t, d0=4.0, L=10.0, A=2.0, g=G):
    """Planar (1-D) oscillation in the parabolic basin z = d0 (x²/L² - 1) (Thacker 1981):
    h = d0 (1 - (x - A cos ωt)²/L²) where positive, u = -A ω sin ωt, ω = sqrt(2 g d0)/L."""
    w = np.sqrt(2 * g * d0) / L
    xc = A * np.cos(w * t)
    h = np.maximum(0.0, d0 * (1 - (np.asarray(x, float) - xc) ** 2 / L**2))
    u = np.where(h > 0, -A * w * np.sin(w * t), 0.0)
    return h, u


def thacker_bed(x, d0=4.0, L=10.0):
    return d0 * (np.asarray(x, float) ** 2 / L**2 - 1)


def thacker_period(d0=4.0, L=10.0, g=G):
    return 2 * np.pi * L / np.sqrt(2 * g * d0)


def thacker_paraboloid_planar(x, y, t, d0=4.0, L=10.0, A=2.0, g=G):
    """Thacker's planar surface in the paraboloid z = d0 ((x² + y²)/L² - 1) (2-D, SWASHES): the
    water lens h = d0 (1 - |x - c(t)|²/L²) moves with uniform velocity along the circle
    c(t) = A (cos ωt, sin ωt), ω = sqrt(2 g d0)/L; its surface is a tilting plane."""
    w = np.sqrt(2 * g * d0) / L
    cx, cy = A * np.cos(w * t), A * np.sin(w * t)
    h = np.maximum(0.0, d0 * (1 - ((x - cx) ** 2 + (y - cy) ** 2) / L**2))
    return h, -A * w * np.sin(w * t), A * w * np.cos(w * t)
