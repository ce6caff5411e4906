"""Held-out metrics of trained SAEs (DESIGN section 4), per run of a pack.

All in the normalised space the SAE is trained in. Sums are accumulated in float64 over the
whole eval split; ratios are ratios of sums:
- loss: the recipe's training objective at the FINAL lambda (mse + lambda * sparsity + aux),
- mse: mean over tokens of ||y - y_hat||^2 (sum over dims),
- nmse: sum ||y - y_hat||^2 / sum ||y||^2,
- fvu: sum ||y - y_hat||^2 / sum ||y - mean(y)||^2, mean over the eval split,
- l0: mean number of active features per token; l1: mean sum_i |f_i| ||W_d,i||,
- dense_frac: fraction of features active on more than 10% of eval tokens,
- shrinkage: sum ||y_hat||^2 / sum <y, y_hat> (the "relative reconstruction bias" gamma of
  Rajamanoharan et al.; 1 = no shrinkage, < 1 = reconstructions shrunk),
- l2_ratio: mean ||y_hat|| / ||y|| over rows with y != 0,
- mmcs: mean over TRUE features of the max cosine with any learned decoder row, and
  recovered_frac: the fraction of true features with that max cosine > 0.9 (synthetic data).
dead_frac is measured during training (see train.py) and added by the trainer.
"""

from __future__ import annotations

from typing import Iterable

import torch

from sae_core.arch import StackedSAE

DENSE_THRESHOLD = 0.1
RECOVERED_COS = 0.9


@torch.no_grad()
def evaluate(sae: StackedSAE, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], lam: torch.Tensor) -> list[dict[str, float]]:
    """Metrics of every run in `sae` over `batches` (x, y) at final sparsity coefficients `lam` [K]."""
    K, m = sae.K, sae.m
    f64 = dict(dtype=torch.float64, device=sae.device)
    sse, sparsity, aux, l0, l1 = (torch.zeros(K, **f64) for _ in range(5))
    yy, yh2, y_norm_ratio = (torch.zeros(K, **f64) for _ in range(3))
    fires = torch.zeros(K, m, **f64)
    sum_y2 = torch.zeros((), **f64)
    sum_y = torch.zeros(sae.o, **f64)
    count = nonzero_rows = 0
    dec_norm = sae.decoder_norms()
    for x, y in batches:
        B = x.shape[0]
        t = sae.terms(x, y)
        err = t.y_hat - y.unsqueeze(0)
        sse += err.pow(2).sum(dim=(1, 2)).double()
        sparsity += t.sparsity.double() * B
        aux += t.aux.double() * B
        active = t.f > 0
        l0 += active.sum(dim=(0, 2)).double()
        l1 += (t.f_sum * dec_norm).sum(-1).double()
        fires += active.sum(0).double()
        sum_y2 += y.double().pow(2).sum()
        sum_y += y.double().sum(0)
        yy += (t.y_hat * y.unsqueeze(0)).sum(dim=(1, 2)).double()
        yh2 += t.y_hat.pow(2).sum(dim=(1, 2)).double()
        y_norm = y.norm(dim=-1)
        nonzero = y_norm > 0
        y_norm_ratio += (t.y_hat[:, nonzero].norm(dim=-1) / y_norm[nonzero]).sum(-1).double()
        nonzero_rows += int(nonzero.sum())
        count += B
    if count == 0:
        raise ValueError("empty eval split")
    centred = sum_y2 - sum_y.pow(2).sum() / count
    out = []
    for k in range(K):
        out.append({
            "loss": float((sse[k] + lam[k].double() * sparsity[k] + aux[k]) / count),
            "mse": float(sse[k] / count),
            "nmse": float(sse[k] / sum_y2),
            "fvu": float(sse[k] / centred),
            "l0": float(l0[k] / count),
            "l1": float(l1[k] / count),
            "sparsity_term": float(sparsity[k] / count),
            "aux_term": float(aux[k] / count),
            "dense_frac": float((fires[k] / count > DENSE_THRESHOLD).double().mean()),
            "eval_dead_frac": float((fires[k] == 0).double().mean()),
            "shrinkage": float(yh2[k] / yy[k]) if yy[k] != 0 else float("nan"),
            "l2_ratio": float(y_norm_ratio[k] / nonzero_rows) if nonzero_rows else float("nan"),
            "eval_tokens": count,
        })
    return out


@torch.no_grad()
def mmcs(decoder: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """(MMCS, recovered fraction) of learned decoder rows [m, n] against true directions [m_true, n]."""
    d = decoder / decoder.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    g = truth / truth.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    best = (g.to(d) @ d.T).max(dim=1).values
    return float(best.mean()), float((best > RECOVERED_COS).double().mean())
