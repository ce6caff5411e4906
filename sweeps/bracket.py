"""Bracketing learning-rate search for one cell: pure functions of the trials seen so far.

Works in u = log10(lr). Round 1 trains start/factor, start, start*factor. While the best LR
is on an edge of the LRs tried, the next round steps past that edge by max(log factor, twice
the gap to its inner neighbour), at most one decade: the step grows geometrically, so a start
two decades off is bracketed in a few rounds. Once the best LR has a worse neighbour on both
sides (it is *interior*), each round trains the vertex v of the parabola through the best and
its two neighbours, and v +/- 0.45 * tolerance (those not already within 0.225 * tolerance of
a tried LR), until the bracket (neighbour to neighbour) is narrower than `tolerance` decades.
Diverged or failed trials count as infinitely bad (a worse neighbour). The search stops when
the bracket is narrow enough or `max_trials` are spent; a cell never bracketed is flagged.

`next_round` is deterministic in its inputs, so a driver can replay a cell's rounds from the
rows already on disk and never train a trial twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from sae_core.errors import UserError

MAX_JUMP = 1.0          # decades: the largest expansion step
REFINE_OFFSET = 0.45    # refinement points sit at the vertex +/- this fraction of the tolerance


@dataclass(frozen=True)
class Bracket:
    """Settings of one search: growth factor, tolerance (decades of LR), trial cap."""

    factor: float = 2.0
    tolerance: float = 0.1
    max_trials: int = 8

    def __post_init__(self) -> None:
        if not (math.isfinite(self.factor) and self.factor > 1):
            raise UserError(f"lr.factor must be a number > 1, got {self.factor}")
        if not (math.isfinite(self.tolerance) and self.tolerance > 0):
            raise UserError(f"lr.tolerance must be a positive number (decades of LR), got {self.tolerance}")
        if self.max_trials < 3:
            raise UserError(f"lr.max_trials must be >= 3 (the first round trains 3 LRs), got {self.max_trials}")


@dataclass(frozen=True)
class Round:
    """What to do next for a cell, and where its search stands."""

    lrs: tuple[float, ...]   # the LRs to train now, as one pack (empty: the search is over)
    interior: bool           # the best LR has a worse neighbour on both sides
    converged: bool          # ... and the neighbours are less than `tolerance` decades apart
    lr_star: float           # the optimum: parabola vertex of the bracket, else the best LR (NaN if none)
    best_lr: float
    best_loss: float
    width: float             # log10 distance between the best LR's neighbours (inf when not interior)
    trials: int              # trials seen

    @property
    def done(self) -> bool:
        return not self.lrs


def next_round(points: Sequence[tuple[float, float]], start: float, bracket: Bracket) -> Round:
    """The next round's LRs given (lr, loss) of every finished trial (loss inf: diverged or failed)."""
    if not (math.isfinite(start) and start > 0):
        raise UserError(f"lr.start must resolve to a positive learning rate, got {start}")
    step = math.log10(bracket.factor)
    us, losses, tried = _profile(points)
    if not us:
        return Round(_lrs([math.log10(start) + d for d in (-step, 0.0, step)], us, bracket.max_trials),
                     False, False, math.nan, math.nan, math.inf, math.inf, 0)
    n = len(us)
    i = min(range(n), key=lambda j: (losses[j], us[j]))
    interior = 0 < i < n - 1 and math.isfinite(losses[i])
    width = us[i + 1] - us[i - 1] if interior else math.inf
    converged = interior and width < bracket.tolerance
    best_u = us[i]
    lr_star = 10 ** _vertex(us[i - 1:i + 2], losses[i - 1:i + 2]) if interior else tried[i]
    if not math.isfinite(losses[i]):
        lr_star = math.nan
    trials = len(points)
    state = dict(interior=interior, converged=converged, lr_star=lr_star, best_lr=tried[i],
                 best_loss=losses[i], width=width, trials=trials)
    if converged or trials >= bracket.max_trials:
        return Round((), **state)
    if interior:
        wanted = _refine(us, losses, i, bracket.tolerance)
    elif not math.isfinite(losses[i]):
        wanted = [us[0] - 2 * step]               # everything diverged or failed: go down
    else:
        side = -1 if i == 0 else 1
        gap = abs(us[i] - us[i - side]) if n > 1 else step
        wanted = [best_u + side * min(max(step, 2 * gap), MAX_JUMP)]
    return Round(_lrs(wanted, us, bracket.max_trials - trials), **state)


def _profile(points: Sequence[tuple[float, float]]) -> tuple[list[float], list[float], list[float]]:
    """Distinct log10 LRs in order, each with its best loss (non-finite -> inf), and the LRs."""
    best: dict[float, float] = {}
    lrs: dict[float, float] = {}
    for lr, loss in points:
        if not (math.isfinite(lr) and lr > 0):
            raise UserError(f"bracket search: a trial has learning rate {lr}; it must be a positive number")
        loss = float(loss) if math.isfinite(loss) else math.inf
        u = math.log10(lr)
        best[u] = min(best.get(u, math.inf), loss)
        lrs[u] = lr
    us = sorted(best)
    return us, [best[u] for u in us], [lrs[u] for u in us]


def _vertex(us: Sequence[float], fs: Sequence[float]) -> float:
    """Vertex of the parabola through three points with the middle one lowest (clipped to their span)."""
    (a, b, c), (fa, fb, fc) = us, fs
    if not (math.isfinite(fa) and math.isfinite(fc)):
        return b
    den = (b - a) * (fb - fc) - (b - c) * (fb - fa)
    if den == 0:
        return b
    v = b - 0.5 * ((b - a) ** 2 * (fb - fc) - (b - c) ** 2 * (fb - fa)) / den
    return min(max(v, a), c)


def _refine(us: list[float], losses: list[float], i: int, tolerance: float) -> list[float]:
    """Refinement LRs (log10) inside the bracket around best index i: the vertex and its two offsets."""
    lo, hi = us[i - 1], us[i + 1]
    v = _vertex(us[i - 1:i + 2], losses[i - 1:i + 2])
    delta = REFINE_OFFSET * tolerance
    wanted = [u for u in (v, v - delta, v + delta)
              if lo < u < hi and all(abs(u - t) > delta / 2 for t in us)]
    if not wanted:   # every candidate is next to a tried LR: halve the wider side instead
        wanted = [(us[i] + lo) / 2 if us[i] - lo > hi - us[i] else (us[i] + hi) / 2]
    return wanted


def _lrs(wanted: list[float], tried: list[float], budget: int) -> tuple[float, ...]:
    """Distinct new LRs (6 significant digits, so rows and replays agree), at most `budget`."""
    out: list[float] = []
    seen = {_round(10 ** u) for u in tried}
    for u in wanted:
        lr = _round(10 ** u)
        if lr not in seen and lr not in out:
            out.append(lr)
    return tuple(out[:max(0, budget)])


def _round(lr: float) -> float:
    return float(f"{lr:.6g}")
