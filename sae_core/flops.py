"""Training FLOPs of a dense SAE (DESIGN section 5).

Per token: forward 2nm (encoder) + 2mo (decoder); backward 2mo (dW_d) + 2mo (df) + 2nm (dW_e),
and no input gradient since the input is data: 4nm + 6mo, i.e. 10nm when o = n. Elementwise
terms (activation, penalties, Adam) are O(m) and not counted. Evaluation is not counted.
"""

from __future__ import annotations

FLOPS_CONVENTION = "sae-dense-4nm+6mo"


def flops_per_token(n: int, m: int, o: int | None = None) -> int:
    """Dense SAE training FLOPs per token: 4nm + 6mo."""
    o = n if o is None else o
    return 4 * n * m + 6 * m * o


def run_flops(n: int, m: int, batch_size: int, steps: int, o: int | None = None) -> int:
    """Training FLOPs of a whole run: flops_per_token x batch_size x steps."""
    return flops_per_token(n, m, o) * batch_size * steps
