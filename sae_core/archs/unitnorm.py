"""Unit-norm decoder rows: the in-loop constraint shared by the L1 recipes (seeds 002, 003)."""

from __future__ import annotations

import torch


@torch.no_grad()
def project_out_parallel(grad: torch.Tensor, W: torch.Tensor) -> None:
    """In place: remove from each row of `grad` its component along the direction of the same row of `W`.

    Towards Monosemanticity's (and Gao et al.'s) step: the gradient parallel to a unit dictionary
    vector only changes its norm, which the renormalisation undoes, so it is projected out before
    Adam. The rows are normalised here, so the projection is exact even if a row has drifted from 1.
    """
    d = W / W.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    grad.sub_((grad * d).sum(-1, keepdim=True) * d)


@torch.no_grad()
def renormalise_rows(W: torch.Tensor) -> None:
    """In place: scale every row of `W` (last dim) to unit L2 norm (all-zero rows stay zero)."""
    W.div_(W.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def unit_rows(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Gaussian rows scaled to unit norm: random directions on the sphere."""
    W = torch.randn(*shape, generator=gen)
    return W / W.norm(dim=-1, keepdim=True)
