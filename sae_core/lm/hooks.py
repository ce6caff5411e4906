"""Forward hooks: read a site's activations (ending the forward pass there) or splice in others.

Blocks may return a tensor (transformers 5) or a tuple whose first item is the hidden state
(older versions, other architectures); both are handled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from sae_core.lm.models import LanguageModel, Site


class _StopForward(Exception):
    """Raised by a capture hook once the site is read, so later layers never run."""


def _hidden(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_hidden(output: Any, new: torch.Tensor) -> Any:
    return (new, *output[1:]) if isinstance(output, tuple) else new


def _input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def model_inputs(lm: LanguageModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
    """Keyword arguments for one forward pass of `lm` over a batch of windows."""
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
    if lm.kind == "causal":
        kwargs["use_cache"] = False
    return kwargs


@torch.inference_mode()
def capture(lm: LanguageModel, site: Site, input_ids: torch.Tensor, attention_mask: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Activations at `site` for a batch: x [B, S, n] and, for mlp sites, y [B, S, o]."""
    got: dict[str, torch.Tensor] = {}

    def read_input(module: Any, args: tuple, kwargs: dict) -> None:
        got["x"] = _input(args, kwargs)

    def read_output(module: Any, args: tuple, output: Any) -> None:
        got["y" if site.has_targets else "x"] = _hidden(output)
        raise _StopForward

    handles = [site.out_module.register_forward_hook(read_output)]
    if site.has_targets:
        handles.append(site.in_module.register_forward_pre_hook(read_input, with_kwargs=True))
    try:
        lm.model(**model_inputs(lm, input_ids, attention_mask))
    except _StopForward:
        pass  # the expected way out: the site was read
    finally:
        for h in handles:
            h.remove()
    if "x" not in got or (site.has_targets and "y" not in got):
        raise RuntimeError(f"the forward pass of {lm.name} never reached {site.name} at layer {site.layer}")
    return got["x"], got.get("y")


@contextmanager
def splice(site: Site, keep: torch.Tensor, replace: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """While active, the site's output at positions `keep` [B, S] becomes `replace(x[keep])`.

    For resid sites x is the block output itself; for mlp sites x is the MLP input and the MLP
    output is replaced (a transcoder standing in for the MLP). Other positions are untouched.
    """
    recorded: dict[str, torch.Tensor] = {}
    busy = []  # non-empty while `replace` runs: it may call the hooked module itself (e.g. the real MLP)

    def read_input(module: Any, args: tuple, kwargs: dict) -> None:
        if not busy:
            recorded["x"] = _input(args, kwargs)

    def write_output(module: Any, args: tuple, output: Any) -> Any:
        if busy:
            return None
        out = _hidden(output)
        src = recorded.pop("x") if site.has_targets else out
        busy.append(True)
        try:
            rows = replace(src[keep])
        finally:
            busy.clear()
        if tuple(rows.shape) != (int(keep.sum()), site.o):
            raise ValueError(f"reconstruction has shape {list(rows.shape)}, expected [{int(keep.sum())}, {site.o}]")
        new = out.clone()
        new[keep] = rows.to(new.dtype)
        return _replace_hidden(output, new)

    handles = [site.out_module.register_forward_hook(write_output)]
    if site.has_targets:
        handles.append(site.in_module.register_forward_pre_hook(read_input, with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
