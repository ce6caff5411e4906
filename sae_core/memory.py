"""Memory estimate of training a pack, for sizing packs (sweeps) and fractional-GPU packing.

Counts fp32 tensors: parameters, their gradients, two Adam moments and Adam's reused update
buffer per run, plus the per-step activations (pre-activations, activations, masks and their
gradients, about 5 x B x m, and 3 x B x o for reconstruction and error). The shared data
window is separate (see loader.window_rows_for). An estimate, not a bound: allocator slack
and eval chunks come on top, so callers should keep a margin.
"""

from __future__ import annotations


def pack_bytes(n: int, o: int, m: int, batch_size: int, K: int = 1) -> int:
    """Approximate peak bytes of training K stacked runs of shape (n, o, m) at batch_size."""
    params = m * (n + o + 2) + o
    per_run = 5 * params + 5 * batch_size * m + 3 * batch_size * o
    return 4 * K * per_run


def max_pack_size(n: int, o: int, m: int, batch_size: int, budget_bytes: int, cap: int) -> int:
    """Largest K <= cap whose estimate fits in budget_bytes (at least 1)."""
    per_run = pack_bytes(n, o, m, batch_size, 1)
    return max(1, min(cap, budget_bytes // per_run))
