"""LR decay and sparsity-coefficient warm-up (seeds 004 and 000), as factors in [0, 1].

Step t runs over 0..S-1 and the factor is evaluated at t, so both schedules are the linear
ramps of the seeds sampled at the start of each step:
- LR: constant, then linear decay to 0 over the last `decay_frac` of steps; the factor would
  reach 0 at t = S (after the last update), so no update is wasted at LR 0.
- lambda: "initially 0 and linearly increases to its final value over the first
  `warmup_frac` of training steps"; with warmup_frac = 1 (seed 000) it ramps over all of
  training and reaches the final value at t = S, where the eval loss is measured.
"""

from __future__ import annotations


def _ramp_length(steps: int, frac: float) -> int:
    return max(1, round(frac * steps))


def lr_factor(step: int, steps: int, decay_frac: float) -> float:
    """Multiplier of the base LR at `step`: 1 until the decay window, then (S - t) / D."""
    if decay_frac <= 0:
        return 1.0
    return min(1.0, (steps - step) / _ramp_length(steps, decay_frac))


def lambda_factor(step: int, steps: int, warmup_frac: float) -> float:
    """Multiplier of the final lambda at `step`: t / W during warm-up, then 1."""
    if warmup_frac <= 0:
        return 1.0
    return min(1.0, step / _ramp_length(steps, warmup_frac))
