"""`saescale activations cache`: a real run prints one summary line; bad input is one `error:` line."""

from __future__ import annotations

import pytest

from saescale.cli import main
from saescale.commands.activations import parse_tokens
from sae_core.errors import UserError


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def cache_args(corpus, out, **over: str) -> list[str]:
    opts = {"--model": "minilm", "--layer": "3", "--text": str(corpus), "--tokens": "1200", "--out": str(out)}
    opts.update(over)
    return ["activations", "cache", *[a for kv in opts.items() for a in kv], "--no-progress"]


def test_cache_command_writes_a_store_and_prints_a_summary(minilm, corpus, tmp_path, capsys):
    code, out, err = run(cache_args(corpus, tmp_path / "s", **{"--tokens": "1.2e3", "--batch-size": "8"}), capsys)
    assert code == 0, err
    [line] = out.splitlines()
    assert line.startswith("cached 1200 rows of minilm layer 3 resid (n=384, o=384, float32) at ")
    assert "tok/s" in line and str(tmp_path / "s") in line and "content_hash " in line


def test_second_run_into_a_finished_store_needs_overwrite(minilm, minilm_store, corpus, capsys):
    code, out, err = run(cache_args(corpus, minilm_store.path), capsys)
    assert code == 2 and err.startswith("error: --out ") and "--overwrite" in err


@pytest.mark.parametrize("over, message", [
    ({"--model": "gpt5"}, "error: --model: unknown model 'gpt5'; choose minilm, smollm2 or hf:<name>"),
    ({"--layer": "9"}, "error: --layer 9 is out of range for minilm: it has blocks 1..6"),
    ({"--tokens": "0"}, "error: --tokens must be a positive whole number, got '0'"),
    ({"--tokens": "many"}, "error: --tokens must be a number, got 'many'"),
    ({"--text": "/no/such/dir"}, "error: --text /no/such/dir: no such file or folder"),
    ({"--site": "attn"}, "error: --site must be one of resid, mlp, got 'attn'"),
    ({"--device": "cuda:7"}, "error: --device cuda:7: CUDA is not available on this machine"),
])
def test_bad_input_is_one_error_line(minilm, corpus, tmp_path, capsys, over, message):
    if over.get("--device", "").startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    code, out, err = run(cache_args(corpus, tmp_path / "s", **over), capsys)
    assert code == 2
    assert err.strip() == message
    assert not (tmp_path / "s" / "meta.json").exists()


def test_empty_text_is_one_error_line(minilm, tmp_path, capsys):
    text = tmp_path / "text"
    text.mkdir()
    (text / "blank.txt").write_text("\n\n   \n")
    code, out, err = run(cache_args(text, tmp_path / "s"), capsys)
    assert (code, err.strip()) == (2, "error: --text: the text is empty (no cacheable tokens)")


def test_hf_model_with_the_hub_unreachable_is_one_error_line(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(cache_args(corpus, tmp_path / "s", **{"--model": "hf:saescale-test/no-such-model"}), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: --model hf:saescale-test/no-such-model: the Hugging Face hub") and "unreachable" in err


def test_hf_local_folder_model(tiny_gpt2_dir, corpus, tmp_path, capsys):
    code, out, err = run(cache_args(corpus, tmp_path / "s", **{"--model": f"hf:{tiny_gpt2_dir}", "--layer": "2",
                                                               "--seq-len": "64", "--site": "mlp"}), capsys)
    assert code == 0, err
    assert out.startswith(f"cached 1200 rows of hf:{tiny_gpt2_dir} layer 2 mlp (n=32, o=32, float32)")


@pytest.mark.parametrize("text, value", [("200000", 200000), ("2e5", 200000), ("200_000", 200000), ("1.5e3", 1500)])
def test_parse_tokens(text, value):
    assert parse_tokens(text) == value


@pytest.mark.parametrize("text", ["1.5", "-3", "0", "1e-3", "ten"])
def test_parse_tokens_rejects(text):
    with pytest.raises(UserError):
        parse_tokens(text)
