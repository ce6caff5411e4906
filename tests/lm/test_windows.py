"""Window plans: layouts, the keep mask (no special tokens, no position 0), exact token budgets."""

from __future__ import annotations

import numpy as np
import pytest

from sae_core.lm.text import Document
from sae_core.lm.windows import plan_windows
from sae_core.errors import UserError
from .conftest import PARAGRAPHS

DOCS = [Document(f"doc{i}", p) for i, p in enumerate(PARAGRAPHS)]


def test_encoder_windows_are_framed_per_document_and_keep_skips_specials(minilm):
    tok = minilm.tokenizer
    plan = plan_windows(minilm, DOCS, 32, 200)
    assert plan.input_ids.shape[1] == 32
    assert (plan.input_ids[:, 0] == tok.cls_token_id).all()
    special = np.isin(plan.input_ids, sorted(minilm.special_ids))
    assert not (plan.keep & special).any()
    assert not plan.keep[:, 0].any()
    # every non-special token inside the attention mask is kept, except position 0
    assert (plan.keep == (plan.attention_mask & ~special)).all()
    # each window holds tokens of one document: [CLS] chunk [SEP] then padding
    lengths = plan.attention_mask.sum(1)
    assert all(plan.input_ids[i, lengths[i] - 1] == tok.sep_token_id for i in range(plan.windows))
    assert plan.keep.sum() >= 200 and plan.keep[:-1].sum() < 200  # stops at the window completing the budget


def test_causal_windows_pack_documents_and_skip_position_zero(tiny_gpt2):
    plan = plan_windows(tiny_gpt2, DOCS, 16, 300)
    assert plan.attention_mask[:-1].all()
    assert not plan.keep[:, 0].any() and plan.keep[:, 1:].all()  # the BERT tokenizer adds no separators here
    expected = np.concatenate([tiny_gpt2.tokenizer(d.text, add_special_tokens=False)["input_ids"] for d in DOCS])
    flat = plan.input_ids.reshape(-1)
    assert (flat == expected[: flat.size]).all()


def test_plan_is_deterministic(minilm):
    assert plan_windows(minilm, DOCS, 32, 300).digest() == plan_windows(minilm, DOCS, 32, 300).digest()


def test_too_little_text_is_a_user_error_naming_the_count(minilm):
    with pytest.raises(UserError, match=r"--tokens 100000: the text gives only \d+ cacheable tokens"):
        plan_windows(minilm, DOCS, 32, 100_000)


def test_empty_text_is_a_user_error(minilm):
    with pytest.raises(UserError, match="the text is empty"):
        plan_windows(minilm, [], 32, 10)


@pytest.mark.parametrize("seq_len", [1, 3, 513])
def test_seq_len_outside_the_model_range_is_a_user_error(minilm, seq_len):
    with pytest.raises(UserError, match=r"--seq-len must be in \[4, 512\]"):
        plan_windows(minilm, DOCS, seq_len, 10)
