"""Which SAELens 6 architecture each saescale recipe's export loads as, or why it has none.

A value is a SAELens architecture name (a transcoder export appends "_transcoder"), or
"absent: <reason>" for a recipe SAELens cannot run; every registered recipe must appear here
(tests/interop/test_classification.py), so a new recipe is classified when it lands.
"""

from __future__ import annotations

ABSENT = "absent"

SAELENS_ARCH: dict[str, str] = {
    "anthropic-2024-04": "standard",     # ReLU, penalty f_i ||W_d,i||: SAELens's StandardSAE
    "anthropic-2025-02": "jumprelu",     # JumpReLU; its transcoders load as jumprelu_transcoder
    "anthropic-2023-10": "standard",     # the input centring by b_d folds into b_enc
    "cunningham-2023": "standard",       # tied M: W_enc = M^T, W_dec = M, b_dec = 0
    "deepmind-2024-gated": "gated",      # gate/magnitude paths with r_mag: SAELens's GatedSAE
    "openai-2024-topk": "topk",          # ReLU of the top k pre-activations, cfg field k
    "batchtopk-2024": "jumprelu",        # inference by the learned threshold, as SAELens saves BatchTopK
}


def saelens_arch(recipe: str) -> str:
    """The classification of `recipe`; KeyError when it is unclassified."""
    return SAELENS_ARCH[recipe]
