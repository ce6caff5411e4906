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


GATED_FLOPS_CONVENTION = "sae-gated-4nm+10mo"
GATED_UNFROZEN_FLOPS_CONVENTION = "sae-gated-4nm+12mo"


def gated_flops_per_token(n: int, m: int, o: int | None = None, aux_decoder_grad: bool = False) -> tuple[int, str]:
    """Gated SAE training FLOPs per token and the convention's name.

    The dense 4nm + 6mo (one encoder GEMM feeds both paths) plus the auxiliary reconstruction
    ReLU(pi_gate) W_d: forward 2mo and its input gradient 2mo; + 2mo more for dW_d when the
    decoder is not frozen in the auxiliary task.
    """
    o = n if o is None else o
    if aux_decoder_grad:
        return 4 * n * m + 12 * m * o, GATED_UNFROZEN_FLOPS_CONVENTION
    return 4 * n * m + 10 * m * o, GATED_FLOPS_CONVENTION
