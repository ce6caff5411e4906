"""Downstream fidelity: how much of the model's behaviour survives a reconstruction spliced in.

On held-out text windows saved with the store (its eval split, never training rows), the
model runs clean, with `reconstruct(x)` spliced in at the cached site and positions, and with
two baselines at the same positions: zero-ablation and mean-ablation (the store's train-split
mean). Position 0 and special tokens are never touched.

* Causal LMs (smollm2, hf causal): next-token cross-entropy (nats/token) of each run and
  ce_recovered_zero = (ce_zero_abl - ce_spliced) / (ce_zero_abl - ce_clean), ce_recovered_mean
  likewise against mean-ablation (Anthropic's "fraction of CE loss recovered", seed 004).
* Encoders (minilm, hf encoders; no LM head): sentence embedding = mean-pool of the last hidden
  state over the attention mask, L2-normalised (as sentence-transformers does); emb_cos_* is the
  mean cosine to the clean embedding and emb_cos_recovered = (cos - cos_mean_abl) / (1 - cos_mean_abl).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from contextlib import nullcontext

import numpy as np
import torch

from sae_core.lm.hooks import model_inputs, splice
from sae_core.lm.models import LanguageModel, load_model
from sae_core.store import ActivationStore
from sae_core.errors import UserError

Reconstruct = Callable[[torch.Tensor], torch.Tensor]
CE_COLUMNS = ("ce_clean", "ce_spliced", "ce_zero_abl", "ce_mean_abl", "ce_recovered_zero", "ce_recovered_mean")
EMBEDDING_COLUMNS = ("emb_cos_spliced", "emb_cos_mean_abl", "emb_cos_recovered")
RESULT_COLUMNS = (*CE_COLUMNS, *EMBEDDING_COLUMNS, "downstream_windows")
_MEAN_MAX_ROWS = 1 << 20


class DownstreamEval:
    """Scores reconstructions against one store's model: loads the model and the held-out windows
    once and computes the clean and ablation baselines once (they do not depend on the SAE), so
    a pack of K runs costs K spliced passes plus one set of baselines."""

    def __init__(self, store: ActivationStore, *, windows: int = 16, batch_size: int = 8, device: str = "cpu",
                 model: LanguageModel | None = None):
        src = store.meta.source
        if src.get("kind") != "lm":
            raise UserError(f"downstream metrics need a store cached from a language model; "
                            f"{store.path} is {src.get('kind')!r}")
        self.lm = model if model is not None else load_model(src["model"], device)
        if (self.lm.name, self.lm.ref) != (src["model"], src["model_ref"]):
            raise UserError(f"{store.path} was cached from {src['model']} ({src['model_ref']}), "
                            f"not the loaded {self.lm.name} ({self.lm.ref})")
        self.site = self.lm.site(int(src["layer"]), src["site"])
        if (self.site.n, self.site.o) != (store.n, store.o):
            raise UserError(f"{store.path}: n, o = {store.n}, {store.o} but the model's site has {self.site.n}, {self.site.o}")
        ids, mask, keep = _eval_windows(store, windows, self.lm.device)
        self.batches = [(ids[i:i + batch_size], mask[i:i + batch_size], keep[i:i + batch_size])
                        for i in range(0, ids.shape[0], batch_size)]
        self.windows = int(ids.shape[0])
        self.mean = torch.from_numpy(train_mean(store)).to(self.lm.device)
        self._ce_baseline: dict[str, list[tuple[float, int]]] | None = None
        self._emb_baseline: tuple[list[torch.Tensor], float] | None = None

    def __call__(self, reconstruct: Reconstruct) -> dict[str, float]:
        """Every RESULT_COLUMNS entry for splicing `reconstruct` (raw x [k, n] -> raw y_hat [k, o]) in;
        the other model kind's columns are NaN, so result tables keep one schema."""
        result = dict.fromkeys(RESULT_COLUMNS, float("nan"))
        result.update(self._ce(reconstruct) if self.lm.kind == "causal" else self._embedding(reconstruct))
        result["downstream_windows"] = float(self.windows)
        return result

    def _zero(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], self.site.o, device=x.device, dtype=x.dtype)

    def _mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean.to(x.dtype).expand(x.shape[0], self.site.o)

    def _forward(self, batch: tuple[torch.Tensor, ...], replace: Reconstruct | None):
        ids, mask, keep = batch
        with splice(self.site, keep, replace) if replace is not None else nullcontext():
            return self.lm.model(**model_inputs(self.lm, ids, mask))

    def _ce_sums(self, batch: tuple[torch.Tensor, ...], replace: Reconstruct | None) -> tuple[float, int]:
        """Summed next-token CE over real (non-padding) targets of a batch, and their count."""
        ids, mask, _ = batch
        logits = self._forward(batch, replace).logits[:, :-1]
        valid = (mask[:, :-1] & mask[:, 1:]).reshape(-1)
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1),
                                               reduction="none")
        return float(ce[valid].sum()), int(valid.sum())

    @torch.inference_mode()
    def _ce(self, reconstruct: Reconstruct) -> dict[str, float]:
        if self._ce_baseline is None:
            self._ce_baseline = {name: [self._ce_sums(b, replace) for b in self.batches]
                                 for name, replace in (("clean", None), ("zero_abl", self._zero), ("mean_abl", self._mean))}
        runs = {**self._ce_baseline, "spliced": [self._ce_sums(b, reconstruct) for b in self.batches]}
        ce = {name: sum(s for s, _ in sums) / sum(c for _, c in sums) for name, sums in runs.items()}
        return {
            "ce_clean": ce["clean"], "ce_spliced": ce["spliced"], "ce_zero_abl": ce["zero_abl"],
            "ce_mean_abl": ce["mean_abl"],
            "ce_recovered_zero": _frac(ce["zero_abl"] - ce["spliced"], ce["zero_abl"] - ce["clean"]),
            "ce_recovered_mean": _frac(ce["mean_abl"] - ce["spliced"], ce["mean_abl"] - ce["clean"]),
        }

    def _embed(self, batch: tuple[torch.Tensor, ...], replace: Reconstruct | None) -> torch.Tensor:
        return sentence_embedding(self._forward(batch, replace).last_hidden_state, batch[1])

    def _mean_cos(self, clean: list[torch.Tensor], replace: Reconstruct) -> float:
        """Mean cosine between the clean embeddings and those with `replace` spliced in."""
        return float(torch.cat([(c * self._embed(b, replace)).sum(-1) for c, b in zip(clean, self.batches)]).mean())

    @torch.inference_mode()
    def _embedding(self, reconstruct: Reconstruct) -> dict[str, float]:
        if self._emb_baseline is None:
            clean = [self._embed(b, None) for b in self.batches]
            self._emb_baseline = clean, self._mean_cos(clean, self._mean)
        clean, cos_mean = self._emb_baseline
        cos = self._mean_cos(clean, reconstruct)
        return {"emb_cos_spliced": cos, "emb_cos_mean_abl": cos_mean,
                "emb_cos_recovered": _frac(cos - cos_mean, 1.0 - cos_mean)}


def downstream_metrics(
    store: ActivationStore,
    reconstruct: Reconstruct,
    *,
    windows: int = 16,
    batch_size: int = 8,
    device: str = "cpu",
    model: LanguageModel | None = None,
) -> dict[str, float]:
    """Result columns for splicing `reconstruct` (raw x [k, n] -> raw y_hat [k, o]) into the store's model.

    Uses the first `windows` held-out windows saved with the store. `model` reuses a loaded
    model (it must be the store's); otherwise the store's model is loaded on `device`. For
    several reconstructions of one store, build one DownstreamEval and call it per reconstruction.
    """
    return DownstreamEval(store, windows=windows, batch_size=batch_size, device=device, model=model)(reconstruct)


def train_mean(store: ActivationStore) -> np.ndarray:
    """Mean of the site's output rows (y for transcoder stores, else x) over the train split."""
    lo, hi = store.train_range
    step = max(1, (hi - lo) // _MEAN_MAX_ROWS)
    total = np.zeros(store.o, dtype=np.float64)
    count = 0
    for a in range(lo, hi, 65536 * step):
        x, y = store.read(a, min(hi, a + 65536 * step))
        rows = (y if y is not None else x)[::step]
        total += rows.sum(axis=0, dtype=np.float64)
        count += rows.shape[0]
    return (total / count).astype(np.float32)


def _eval_windows(store: ActivationStore, windows: int, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if windows <= 0:
        raise UserError(f"downstream windows must be positive, got {windows}")
    name = store.meta.extra.get("eval_windows_file")
    if not name or not (store.path / name).is_file():
        raise UserError(f"{store.path}: no held-out text windows saved with this store; re-cache it")
    with np.load(store.path / name) as z:
        ids, mask, keep = z["input_ids"][:windows], z["attention_mask"][:windows], z["keep"][:windows]
    if ids.shape[0] == 0:
        raise UserError(f"{store.path}: the store is too small to hold out any text window; cache more tokens")
    return (torch.from_numpy(ids).to(device, torch.long), torch.from_numpy(mask).to(device), torch.from_numpy(keep).to(device))


def _frac(num: float, den: float) -> float:
    return num / den if den != 0 else float("nan")


def sentence_embedding(last_hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean-pool over the attention mask, then L2-normalise (all-MiniLM-L6-v2's pooling)."""
    m = mask.unsqueeze(-1).to(last_hidden.dtype)
    pooled = (last_hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


def score_pack(store: ActivationStore, states: list[dict[str, torch.Tensor] | None], *, arch: str,
               hp: dict[str, Any], windows: int, device: str = "cpu",
               run_hps: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Downstream columns for each trained run of a pack (None = diverged: NaN columns).

    `states` are runs' normalised-space parameters (StackedSAE.run_state); each is folded to raw
    units (sae_core.export.fold_weights) and spliced in. When the store has no model behind it
    (synthetic or external data) or the model cannot be loaded here, every run gets NaN
    columns and `downstream_skipped` says why, so tables keep one schema.
    """
    from sae_core.arch import ARCHS
    from sae_core.export import ExportedSAE, fold_weights
    from sae_core.lm.models import model_available

    empty: dict[str, Any] = {**dict.fromkeys(RESULT_COLUMNS, float("nan")), "downstream_skipped": ""}
    src = store.meta.source
    if src.get("kind") != "lm":
        return [{**empty, "downstream_skipped": f"store source is {src.get('kind')!r}, not a language model"}
                for _ in states]
    if not model_available(src["model"]):
        return [{**empty, "downstream_skipped": f"model {src['model']} not available here"} for _ in states]
    normalize = bool(hp["normalize"])
    sx = store.meta.norm_scale if normalize else 1.0
    sy = store.meta.target_norm_scale if normalize else 1.0
    config = {"architecture": ARCHS[arch].saelens_architecture}
    evaluate = DownstreamEval(store, windows=windows, device=device)
    out = []
    for state, run_hp in zip(states, run_hps or [hp] * len(states)):   # run_hps: per-run keys (TopK's k)
        if state is None:
            out.append({**empty, "downstream_skipped": "run diverged"})
            continue
        weights = {k: t.to(evaluate.lm.device) for k, t in fold_weights(state, sx, sy, arch, run_hp).items()}
        run_config = {**config, **ARCHS[arch].export_config(run_hp)}
        out.append({**evaluate(ExportedSAE(weights, run_config)), "downstream_skipped": ""})
    return out
