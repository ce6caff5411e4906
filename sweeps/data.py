"""Resolve a spec's `activations:` to an ActivationStore in the driver, and reopen it in tasks.

Source kinds are a registry (`RESOLVERS`: kind -> resolver), so a new source (e.g. `lm`) is one
function. The driver turns the source into a `DataRef` (path, content hash, and for synthetic
data the generator config); a task reopens the store from the ref, regenerating synthetic data
on a node that cannot see the driver's cache, and refuses data whose content hash differs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from sae_core.errors import UserError
from sae_core.store import ActivationStore
from sae_core.runtime import default_cache_dir
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.config import stable_hash
from sweeps.spec import LMSource, StoreSource, SweepSpec, SyntheticSource


@dataclass(frozen=True)
class DataRef:
    """What a task needs to open the sweep's data: where, which content, how to rebuild it."""

    kind: str
    path: str
    content_hash: str
    synthetic: dict[str, Any] | None = None

    def open(self) -> ActivationStore:
        """The store this ref names (regenerated from `synthetic` if the path is not visible here)."""
        if Path(self.path, "meta.json").is_file():
            store = ActivationStore(self.path)
        elif self.synthetic is not None:
            store = synthetic_store(SyntheticConfig(**self.synthetic), default_cache_dir())
        else:
            raise UserError(f"activation store {self.path} is not visible on this node "
                            "(put stores on storage every node mounts at the same path)")
        if store.content_hash != self.content_hash:
            raise UserError(f"activation store {store.path} has content hash {store.content_hash[:16]}, "
                            f"the sweep planned with {self.content_hash[:16]}")
        return store


def synthetic_config(src: SyntheticSource) -> SyntheticConfig:
    """The generator config of a `source: synthetic` spec (its store lives at cache/synthetic-<key>)."""
    return SyntheticConfig(n=src.n, m_true=src.true_features, tokens=src.tokens, seed=src.seed,
                           zipf_exponent=src.zipf_exponent, mean_active=src.mean_active,
                           magnitude_low=src.magnitude_low, magnitude_high=src.magnitude_high,
                           groups=src.groups, group_coupling=src.group_coupling, noise_std=src.noise_std)


def _synthetic(src: SyntheticSource, spec: SweepSpec) -> tuple[ActivationStore, DataRef]:
    cfg = synthetic_config(src)
    try:
        cfg.validate()
    except UserError as exc:
        raise UserError(f"activations: {exc}") from None
    cache = Path(src.cache_dir).expanduser() if src.cache_dir else default_cache_dir()
    store = synthetic_store(cfg, cache)
    return store, DataRef("synthetic", str(store.path.resolve()), store.content_hash, asdict(cfg))


def _store(src: StoreSource, spec: SweepSpec) -> tuple[ActivationStore, DataRef]:
    path = Path(src.path).expanduser()
    if not path.exists():
        raise UserError(f"activations.path: activation store not found: {src.path}")
    try:
        store = ActivationStore(path)
    except UserError as exc:
        raise UserError(f"activations.path: {exc}") from None
    if src.n is not None and src.n != store.n:
        raise UserError(f"activations.n: spec says n={src.n} but store {src.path} has n={store.n}")
    return store, DataRef("store", str(path.resolve()), store.content_hash)


def _lm(src: LMSource, spec: SweepSpec) -> tuple[ActivationStore, DataRef]:
    """Cache the model's activations once (resuming an interrupted cache), then reuse the store."""
    from sae_core.lm.cache import cache_activations

    key = {k: getattr(src, k) for k in ("model", "layer", "site", "text", "tokens", "seq_len", "dtype")}
    out = Path(src.out).expanduser() if src.out else default_cache_dir() / f"lm-{stable_hash(key)}"
    if (out / "meta.json").is_file():
        store = ActivationStore(out)
        meta = store.meta.source
        got = {k: meta.get(k) for k in ("model", "layer", "site", "tokens", "seq_len")}
        want = {k: key[k] for k in got}
        if got != want or store.meta.dtype != src.dtype:
            raise UserError(f"activations.out: {out} holds a different store ({got}, {store.meta.dtype}); "
                            "choose another out or remove it")
    else:
        try:
            store = cache_activations(src.model, src.layer, src.site, src.text, src.tokens, out, seq_len=src.seq_len,
                                      batch_size=src.batch_size, device=src.device, dtype=src.dtype)
        except UserError as exc:
            raise UserError(f"activations: {exc}") from None
    return store, DataRef("store", str(out.resolve()), store.content_hash)


# A new source kind = a pydantic model in spec.Activations + a resolver here.
Resolver = Callable[[Any, SweepSpec], tuple[ActivationStore, DataRef]]
RESOLVERS: dict[str, Resolver] = {"synthetic": _synthetic, "store": _store, "lm": _lm}


def resolve_data(spec: SweepSpec) -> tuple[ActivationStore, DataRef]:
    """The spec's store (generated or opened and validated) and the ref tasks reopen it by."""
    kind = spec.activations.source
    return RESOLVERS[kind](spec.activations, spec)

