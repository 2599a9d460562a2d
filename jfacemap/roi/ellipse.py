"""Direct least-squares ellipse fit to points (Fitzgibbon, Pilu & Fisher 1999, in the
numerically stable form of Halir & Flusser 1998).

    fit = fit_ellipse(x, y)   # None when the points do not define an ellipse
    cx, cy, a, b, angle = fit  # centre, semi-axes (a >= b), major-axis angle (radians)
    fits = fit_ellipses(frame, x, y, n_frames)   # many point sets at once: (n_frames, 5), NaN rows
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_ellipse"]


def fit_ellipse(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, float] | None:
    """(cx, cy, a, b, angle) of the ellipse nearest (algebraically) to points (x, y), n >= 6.

    a >= b are semi-axes, angle in (-pi/2, pi/2] is the major axis from +x
    toward +y. None for fewer than 6 points or a degenerate fit.
    """
    row = fit_ellipses(np.zeros(len(x), np.int64), x, y, 1)[0]
    return None if np.isnan(row[0]) else tuple(float(v) for v in row)  # type: ignore[return-value]


def fit_ellipses(group: np.ndarray, x: np.ndarray, y: np.ndarray, n_groups: int) -> np.ndarray:
    """`fit_ellipse` of many point sets at once: points (x, y) with `group` (ints in 0..n_groups-1).

    Returns (n_groups, 5) float64 rows (cx, cy, a, b, angle) as `fit_ellipse`;
    NaN rows for groups with fewer than 6 points or no ellipse.
    """
    out = np.full((n_groups, 5), np.nan)
    group = np.asarray(group, np.int64)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    count = np.bincount(group, minlength=n_groups)
    keep = count[group] >= 6
    group, x, y = group[keep], x[keep], y[keep]
    if len(group) == 0:
        return out
    safe = np.maximum(count, 1)
    mx, my = np.bincount(group, x, n_groups) / safe, np.bincount(group, y, n_groups) / safe
    u, v = x - mx[group], y - my[group]
    scale = np.sqrt(np.bincount(group, u * u + v * v, n_groups) / safe)
    scale = np.where(scale > 1e-9, scale, 1.0)
    u, v = u / scale[group], v / scale[group]
    d = np.stack([u * u, u * v, v * v, u, v, np.ones_like(u)], axis=1)  # (P, 6)
    outer = d[:, :, None] * d[:, None, :]
    scatter = np.zeros((n_groups, 6, 6))
    np.add.at(scatter, group, outer)
    which = np.flatnonzero(count >= 6)
    s = scatter[which]
    s1, s2, s3 = s[:, :3, :3], s[:, :3, 3:], s[:, 3:, 3:]
    good = np.abs(np.linalg.det(s3)) > 1e-12
    which, s1, s2, s3 = which[good], s1[good], s2[good], s3[good]
    if len(which) == 0:
        return out
    t = -np.linalg.solve(s3, np.transpose(s2, (0, 2, 1)))  # (G, 3, 3)
    m = s1 + s2 @ t
    m = np.stack([m[:, 2] / 2, -m[:, 1], m[:, 0] / 2], axis=1)
    w, vec = np.linalg.eig(m)
    vec = np.real(vec)  # (G, 3 components, 3 eigenvectors)
    cond = 4 * vec[:, 0] * vec[:, 2] - vec[:, 1] ** 2  # (G, 3)
    pick = np.argmax(cond > 0, axis=1)
    has = (cond > 0).any(axis=1)
    a1 = vec[np.arange(len(vec)), :, pick]  # (G, 3)
    a2 = np.einsum("gij,gj->gi", t, a1)
    A, B, C = a1.T
    D, E, F = a2.T
    den = B * B - 4 * A * C
    has &= den < 0
    den = np.where(has, den, -1.0)
    cu, cv = (2 * C * D - B * E) / den, (2 * A * E - B * D) / den
    f0 = A * cu * cu + B * cu * cv + C * cv * cv + D * cu + E * cv + F
    q = np.stack([np.stack([A, B / 2], -1), np.stack([B / 2, C], -1)], 1)
    lam, vecs = np.linalg.eigh(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        semi2 = -f0[:, None] / lam
    has &= np.all(semi2 > 0, axis=1) & (f0 != 0)
    semi = np.sqrt(np.where(has[:, None], semi2, 1.0))
    major = vecs[np.arange(len(vecs)), :, np.argmax(semi, axis=1)]
    angle = np.arctan2(major[:, 1], major[:, 0])
    angle = np.where(angle <= -np.pi / 2, angle + np.pi, np.where(angle > np.pi / 2, angle - np.pi, angle))
    sc = scale[which]
    rows = np.stack([cu * sc + mx[which], cv * sc + my[which], semi.max(1) * sc, semi.min(1) * sc, angle], axis=1)
    out[which[has]] = rows[has]
    return out
