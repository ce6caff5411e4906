"""Minimum of a sampled 1-D curve by a local parabola (IsoFLOP in log m, LR sweep in log LR).

A parabola through the points nearest the sampled minimum (Chinchilla approach 2) gives a
vertex between grid points; a minimum on the edge of the sampled range, a non-convex fit or
a vertex outside the range is flagged, because the true optimum may lie outside the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW = 5  # distinct abscissae used around the sampled minimum


@dataclass(frozen=True)
class Vertex:
    """Where the curve is lowest: abscissa u, fitted value, an edge flag with its reason, and
    the parabola c0 + c1 (t - centre) + c2 (t - centre)^2 fitted over t in `span`."""

    u: float
    value: float
    edge: bool
    reason: str
    coef: tuple[float, float, float]
    centre: float
    span: tuple[float, float]

    def curve(self, t: np.ndarray) -> np.ndarray:
        """The fitted parabola at abscissae t."""
        d = np.asarray(t, float) - self.centre
        return self.coef[0] + self.coef[1] * d + self.coef[2] * d * d


def parabola_min(u: np.ndarray, v: np.ndarray, w: np.ndarray | None = None, window: int = WINDOW) -> Vertex | None:
    """Vertex of a weighted parabola v ~ u through the `window` distinct u nearest the minimum.

    u, v: samples (duplicates allowed); w: multiplicities (0 = absent). Returns None with
    fewer than 3 distinct u present. A flagged vertex is clipped to the sampled range.
    """
    u, v = np.asarray(u, float), np.asarray(v, float)
    w = np.ones_like(u) if w is None else np.asarray(w, float)
    present = w > 0
    u, v, w = u[present], v[present], w[present]
    levels = np.unique(u)
    if levels.size < 3:
        return None
    i_min = int(np.argmin(v))
    rank = int(np.searchsorted(levels, u[i_min]))
    half = window // 2
    lo = max(0, min(rank - half, levels.size - window))
    chosen = levels[lo : lo + window]
    sel = (u >= chosen[0]) & (u <= chosen[-1])
    centre = u[i_min]
    du = u[sel] - centre
    root_w = np.sqrt(w[sel])
    design = np.stack([np.ones_like(du), du, du * du], axis=1) * root_w[:, None]
    c0, c1, c2 = np.linalg.lstsq(design, v[sel] * root_w, rcond=None)[0]
    u_lo, u_hi = levels[0], levels[-1]
    if rank in (0, levels.size - 1):
        reason = "minimum at the edge of the sampled range"
    elif c2 <= 0:
        reason = "parabola is not convex"
    else:
        reason = ""
    if c2 > 0:
        vertex = centre - c1 / (2.0 * c2)
        if not reason and not u_lo <= vertex <= u_hi:
            reason = "parabola vertex outside the sampled range"
        vertex = float(np.clip(vertex, u_lo, u_hi))
        value = float(c0 + c1 * (vertex - centre) + c2 * (vertex - centre) ** 2)
    else:
        vertex, value = float(centre), float(v[i_min])
    return Vertex(
        u=vertex, value=value, edge=bool(reason), reason=reason,
        coef=(float(c0), float(c1), float(c2)), centre=float(centre), span=(float(chosen[0]), float(chosen[-1])),
    )
