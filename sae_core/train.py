"""Train a pack of K runs (one recipe and shape; own lr, lambda, seed) as one stacked module.

A single run is a pack of one. Per step: one batch from the shared stream, the recipe's loss
for every run at its warmed-up lambda, one backward, per-run grad-norm clipping, per-run Adam
at its decayed LR, and the dead-feature tracker. A run whose loss turns NaN/Inf is stopped
(status "diverged" with the step) without disturbing the others. Checkpoints every N steps,
at the end, and on SIGTERM; resuming from them reproduces an uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from tqdm.auto import tqdm

import saescale
from sae_core.errors import UserError
from sae_core.arch import ARCHS, RUN_DIMS, StackedSAE
from sae_core.checkpoint import checkpoint_path, load_pack_checkpoints, remove_checkpoints, save_checkpoint
from sae_core.config import ResolvedRun, RunConfig
from sae_core.loader import BatchStream, data_sample, eval_batches
from sae_core.metrics import evaluate, mmcs
from sae_core.optim import StackedAdam, clip_grad_norm_per_run
from sae_core.runtime import resolve_device
from sae_core.schedules import lambda_factor, lr_factor
from sae_core.store import ActivationStore


class TrainingInterrupted(Exception):
    """SIGTERM arrived; the pack was checkpointed at `step` (when a checkpoint dir was given)."""

    def __init__(self, step: int, checkpointed: bool):
        super().__init__(f"training interrupted by SIGTERM at step {step}"
                         + (" (checkpoint saved)" if checkpointed else " (no checkpoint dir)"))
        self.step = step
        self.checkpointed = checkpointed


@dataclass
class TrainOptions:
    """How to run (not what): device, threads, checkpointing, progress, returned weights."""

    device: str = "cpu"
    threads: int | None = None
    checkpoint_dir: str | os.PathLike[str] | None = None
    checkpoint_every: int = 0           # steps; 0 = only at the end and on SIGTERM
    keep_checkpoints: bool = False      # keep the final checkpoints after a successful run
    progress: bool | None = None        # None: a bar when stderr is a terminal
    eval_max_rows: int | None = None    # cap on eval rows (default: the whole eval split)
    compile: bool = False               # torch.compile the forward + loss
    downstream_windows: int = 0         # >0: splice each run into the store's model on this many held-out windows
    keep_weights: bool = False          # return each run's final weights in RunResult.weights
    reuse_stream: bool = False          # keep the batch stream (its loaded data) for the next pack in this process


@dataclass
class RunResult:
    """Outcome of one run: its resolved config, status, metrics and accounting."""

    run: ResolvedRun
    name: str
    status: str                    # ok | diverged
    metrics: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    diverged_step: int | None = None
    weights: dict[str, torch.Tensor] | None = None   # normalised-space state (TrainOptions.keep_weights)

    def row(self) -> dict[str, Any]:
        """Flat dict of every column this run contributes to a results table."""
        hp = dict(self.run.hp)
        row: dict[str, Any] = {
            "recipe": self.run.recipe.name, "arch": self.run.recipe.arch,
            "m": self.run.m, "steps": self.run.steps, "batch_size": self.run.batch_size,
            "lr": self.run.lr, "lambda": self.run.lam, "seed": self.run.seed, "data_seed": self.run.data_seed,
        }
        if "k" in hp:  # TopK recipes' sparsity knob, a column like lambda
            row["k"] = hp["k"]
        row.update({f"hp_{k}": v for k, v in hp.items() if k not in ("lr", "lambda", "batch_size", "k")})
        row.update(self.info)
        row.update({"status": self.status, "error": self.error,
                    "diverged_step": -1 if self.diverged_step is None else self.diverged_step})
        row.update(self.metrics)
        return row


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Matmul precision for the forward pass: bf16 autocast, TF32 on CUDA, or plain fp32."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    elif precision == "tf32" and device.type == "cuda":
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
    else:
        yield


@contextlib.contextmanager
def _sigterm_flag() -> Iterator[threading.Event]:
    """An event set by SIGTERM while training (handler installed only in the main thread)."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


# The last batch stream of this process, kept when TrainOptions.reuse_stream (sweep tasks): a
# worker's next pack on the same data starts without reloading and re-checking the train split.
# A stream's batches are a pure function of the step, so sharing it cannot change any batch.
_KEPT_STREAM: dict[tuple, BatchStream] = {}


def _stream(store: ActivationStore, batch_size: int, data_seed: int, device: torch.device, normalize: bool,
            reuse: bool) -> BatchStream:
    """A BatchStream for these settings: the kept one when `reuse` and the settings match, else a new one."""
    key = (str(store.path), store.content_hash, batch_size, data_seed, str(device), normalize)
    if reuse and key in _KEPT_STREAM:
        return _KEPT_STREAM[key]
    stream = BatchStream(store, batch_size, data_seed, device=device, normalize=normalize)
    if reuse:   # keep one stream only: its window can be the whole train split
        for old in _KEPT_STREAM.values():
            old.close()
        _KEPT_STREAM.clear()
        _KEPT_STREAM[key] = stream
    return stream


def train(run: RunConfig | ResolvedRun, store: ActivationStore | str | os.PathLike[str],
          options: TrainOptions | None = None, name: str | None = None) -> RunResult:
    """Train one run (a pack of one)."""
    return train_pack([run], store, options, names=None if name is None else [name])[0]


def train_pack(runs: Sequence[RunConfig | ResolvedRun], store: ActivationStore | str | os.PathLike[str],
               options: TrainOptions | None = None, names: Sequence[str] | None = None) -> list[RunResult]:
    """Train runs that share a pack key together; return one RunResult per run, in order."""
    opts = options or TrainOptions()
    resolved = [r.resolve() if isinstance(r, RunConfig) else r for r in runs]
    if not resolved:
        raise ValueError("train_pack needs at least one run")
    if len({r.pack_key() for r in resolved}) != 1:
        raise UserError("runs of a pack must agree on everything except lr, lambda, seed and k")
    store = store if isinstance(store, ActivationStore) else ActivationStore(store)
    names = list(names) if names is not None else [r.key(store.content_hash) for r in resolved]
    if len(names) != len(resolved) or len(set(names)) != len(names):
        raise ValueError("names must be unique, one per run")
    return _PackTrainer(resolved, store, opts, names).run()


class _PackTrainer:
    """The state and loop of one pack's training (see module docstring)."""

    def __init__(self, runs: list[ResolvedRun], store: ActivationStore, opts: TrainOptions, names: list[str]):
        self.runs, self.store, self.opts, self.names = runs, store, opts, names
        first = runs[0]
        self.recipe, self.hp = first.recipe, dict(first.hp)
        self.steps, self.batch_size, self.K = first.steps, first.batch_size, len(runs)
        self.transcoder = store.meta.has_targets
        if self.transcoder and not self.recipe.supports_transcoder:
            raise UserError(f"recipe {self.recipe.name} does not train transcoders, but store {store.path} has targets")
        if opts.threads:
            torch.set_num_threads(int(opts.threads))
        self.device = resolve_device(opts.device)
        self.identities = [{"config": r.to_dict(), "store_hash": store.content_hash} for r in runs]

    def _build(self) -> tuple[StackedSAE, StackedAdam]:
        first = self.runs[0]
        sae = ARCHS[self.recipe.arch](self.K, self.store.n, self.store.o, first.m, self.hp, self.device,
                                      run_hps=[dict(r.hp) for r in self.runs])
        rows = ARCHS[self.recipe.arch].data_sample_rows(self.hp)
        sample = data_sample(self.store, rows, normalize=self.hp["normalize"]) if rows > 0 else None
        sae.init_params([r.seed for r in self.runs], self.transcoder, sample)
        if self.opts.compile:
            sae.compile()
        opt = StackedAdam(sae.params, RUN_DIMS, (self.hp["adam_beta1"], self.hp["adam_beta2"]), self.hp["adam_eps"])
        return sae, opt

    def _save(self, sae: StackedSAE, opt: StackedAdam, step: int) -> None:
        for k, name in enumerate(self.names):
            save_checkpoint(checkpoint_path(self.opts.checkpoint_dir, name), {
                "identity": self.identities[k], "name": name, "step": step,
                "params": sae.run_state(k), "adam": opt.state_for_run(k), "adam_step": opt.step_count,
                "last_fired": self.last_fired[k].cpu().clone(), "diverged_step": self.diverged[k],
                "tokens_seen": self.tokens_seen, "train_wall_s": self.train_wall_s,
                "last_loss": float(self.last_loss[k]),
                "data_position": {"step": step, "data_seed": self.runs[0].data_seed, "batch_size": self.batch_size},
                "torch_rng": torch.get_rng_state(),
            })

    def _restore(self, sae: StackedSAE, opt: StackedAdam) -> int:
        if self.opts.checkpoint_dir is None:
            return 0
        ckpts = load_pack_checkpoints(self.opts.checkpoint_dir, self.names, self.identities)
        if ckpts is None:
            return 0
        for k, c in enumerate(ckpts):
            sae.load_run(k, {n: t.to(self.device) for n, t in c["params"].items()})
            opt.load_run(k, {n: t.to(self.device) for n, t in c["adam"].items()})
            self.last_fired[k] = c["last_fired"].to(self.device)
            self.diverged[k] = c["diverged_step"]
            self.last_loss[k] = c["last_loss"]
        opt.step_count = ckpts[0]["adam_step"]
        self.tokens_seen = ckpts[0]["tokens_seen"]
        self.train_wall_s = ckpts[0]["train_wall_s"]
        torch.set_rng_state(ckpts[0]["torch_rng"])
        return int(ckpts[0]["step"])

    def run(self) -> list[RunResult]:
        started = time.time()
        sae, opt = self._build()
        self.last_fired = torch.zeros(self.K, sae.m, dtype=torch.long, device=self.device)
        self.diverged: list[int | None] = [None] * self.K
        self.tokens_seen, self.train_wall_s, self.first_step_wall_s = 0, 0.0, float("nan")
        self.last_loss = torch.full((self.K,), float("nan"))
        start = self._restore(sae, opt)
        resumed_from = start
        lrs = torch.tensor([r.lr for r in self.runs], device=self.device)
        lams = torch.tensor([r.lam for r in self.runs], device=self.device)
        stream = _stream(self.store, self.batch_size, self.runs[0].data_seed, self.device, self.hp["normalize"],
                         self.opts.reuse_stream)
        show = self.opts.progress if self.opts.progress is not None else sys.stderr.isatty()
        bar = tqdm(total=self.steps, initial=start, disable=not show, unit="step", dynamic_ncols=True,
                   desc=f"{self.recipe.name} m={sae.m} x{self.K}", file=sys.stderr)
        try:
            with _sigterm_flag() as sigterm:
                t0 = time.perf_counter()
                for step in range(start, self.steps):
                    x, y = stream.batch(step)
                    self.last_loss = self._step(sae, opt, x, y, step, lrs, lams)
                    if sae.resample_due(step + 1):
                        self._resample(sae, opt, step + 1)
                    if step == start:  # pays one-time costs (data window, first-touch of buffers)
                        self.first_step_wall_s = time.perf_counter() - t0
                    if all(d is not None for d in self.diverged):
                        break
                    done = step + 1
                    if sigterm.is_set():
                        self.train_wall_s += time.perf_counter() - t0
                        if self.opts.checkpoint_dir is not None:
                            self._save(sae, opt, done)
                        raise TrainingInterrupted(done, self.opts.checkpoint_dir is not None)
                    every = self.opts.checkpoint_every
                    if self.opts.checkpoint_dir is not None and every and done % every == 0 and done < self.steps:
                        self.train_wall_s += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        self._save(sae, opt, done)
                    if show:
                        bar.update(1)
                        bar.set_postfix(loss=f"{float(self.last_loss.nanmean()):.4g}", refresh=False)
                self.train_wall_s += time.perf_counter() - t0
        finally:
            bar.close()
            if not self.opts.reuse_stream:
                stream.close()
        if self.opts.checkpoint_dir is not None and resumed_from < self.steps:
            self._save(sae, opt, self.steps)
        results = self._finish(sae, lams, started, resumed_from)
        if self.opts.checkpoint_dir is not None and not self.opts.keep_checkpoints:
            remove_checkpoints(self.opts.checkpoint_dir, self.names)
        return results

    def _step(self, sae: StackedSAE, opt: StackedAdam, x: torch.Tensor, y: torch.Tensor, step: int,
              lrs: torch.Tensor, lams: torch.Tensor) -> torch.Tensor:
        """One optimisation step for every live run; returns the per-run train losses [K]."""
        sae.before_step(self.tokens_seen - self.last_fired)
        with precision_context(self.hp["precision"], self.device):
            terms = sae.train_terms(x, y)
            losses = terms.total(lams * lambda_factor(step, self.steps, self.hp["lambda_warmup_frac"])).float()
        finite = torch.isfinite(losses.detach())
        alive = torch.tensor([d is None for d in self.diverged], device=self.device) & finite
        torch.where(alive, losses, torch.zeros((), device=self.device)).sum().backward()
        with torch.no_grad():
            for k in (~alive).nonzero().flatten().tolist():
                if self.diverged[k] is None:
                    self.diverged[k] = step
                    sae.reset_run(k)  # after backward: autograd still needed the old values
                for name, p in sae.params.items():
                    p.grad.select(RUN_DIMS[name], k).zero_()
            sae.adjust_grads()
            clip_grad_norm_per_run(sae.params, RUN_DIMS, self.hp["grad_clip"])
            opt.step(lrs * lr_factor(step, self.steps, self.hp["lr_decay_frac"]) * alive)
            sae.after_step()
            for p in sae.params.values():
                p.grad = None
            self.tokens_seen += x.shape[0]
            self.last_fired[(terms.f_sum > 0) & alive.unsqueeze(1)] = self.tokens_seen
        return losses.detach().cpu()

    def _resample(self, sae: StackedSAE, opt: StackedAdam, done: int) -> None:
        """The architecture's dead-feature resampling after step `done`, on a sample of the train split."""
        sample = data_sample(self.store, sae.resample_rows(), normalize=self.hp["normalize"]).to(self.device)
        sae.resample(done, sample, opt, self.last_fired, self.tokens_seen)

    def _downstream(self, sae: StackedSAE) -> list[dict[str, Any]]:
        """Per-run downstream fidelity columns (sae_core.lm.downstream) when asked for, else none."""
        if self.opts.downstream_windows <= 0:
            return [{} for _ in self.runs]
        from sae_core.lm.downstream import score_pack
        states = [None if self.diverged[k] is not None else sae.run_state(k) for k in range(self.K)]
        return score_pack(self.store, states, arch=self.recipe.arch, hp=self.hp,
                          windows=self.opts.downstream_windows, device=str(self.device),
                          run_hps=[dict(r.hp) for r in self.runs])

    def _finish(self, sae: StackedSAE, lams: torch.Tensor, started: float, resumed_from: int) -> list[RunResult]:
        t_eval = time.perf_counter()
        with precision_context(self.hp["precision"], self.device):
            evals = evaluate(sae, eval_batches(self.store, device=self.device, normalize=self.hp["normalize"],
                                               max_rows=self.opts.eval_max_rows), lams)
        eval_wall = time.perf_counter() - t_eval
        downstream = self._downstream(sae)
        truth = self.store.ground_truth()
        m, n, o = sae.m, self.store.n, self.store.o
        fpt, convention = sae.flops(n, m, o, self.hp)
        tokens = self.steps * self.batch_size
        results = []
        for k, run in enumerate(self.runs):
            window = min(int(self.hp["dead_window_tokens"]), self.tokens_seen)
            dead = float(((self.tokens_seen - self.last_fired[k]) >= window).double().mean()) if window > 0 else float("nan")
            metrics = {**evals[k], "dead_frac": dead, "dead_window_tokens": window,
                       "train_loss_final": float(self.last_loss[k]), **downstream[k]}
            if truth is not None and not self.transcoder:
                metrics["mmcs"], metrics["recovered_frac"] = mmcs(sae.params["W_d"][k].detach(), torch.from_numpy(truth))
            else:
                metrics["mmcs"], metrics["recovered_frac"] = float("nan"), float("nan")
            info = {
                "n": n, "o": o, "tokens": tokens, "flops": fpt * tokens, "flops_per_token": fpt,
                "flops_convention": convention, "pack_size": self.K,
                **self.store.describe(),
                "wall_s": time.time() - started, "train_wall_s": self.train_wall_s, "eval_wall_s": eval_wall,
                "first_step_wall_s": self.first_step_wall_s,
                "train_tokens_per_s": (self.tokens_seen / self.train_wall_s) if self.train_wall_s > 0 else float("nan"),
                "resumed_from_step": resumed_from, "device": str(self.device),
                "threads": torch.get_num_threads(), "torch_version": torch.__version__,
                "saescale_version": saescale.__version__, "host": platform.node(),
            }
            status, error = "ok", ""
            if self.diverged[k] is not None:
                status, error = "diverged", f"loss became non-finite at step {self.diverged[k]}"
                metrics = {key: (float("nan") if isinstance(v, float) else v) for key, v in metrics.items()}
            weights = {n_: t.cpu() for n_, t in sae.run_state(k).items()} if self.opts.keep_weights else None
            results.append(RunResult(run=run, name=self.names[k], status=status, metrics=metrics, info=info,
                                     error=error, diverged_step=self.diverged[k], weights=weights))
        return results
