"""`saescale activations cache`: real model activations over real text into an ActivationStore."""

from __future__ import annotations

from pathlib import Path

import typer

from sae_core.errors import UserError


def parse_tokens(value: str) -> int:
    """A token count written as an integer or in float notation (`200000`, `2e5`, `200_000`)."""
    text = value.strip().replace("_", "")
    try:
        number = float(text)
    except ValueError:
        raise UserError(f"--tokens must be a number, got {value!r}") from None
    if not number.is_integer() or number <= 0:
        raise UserError(f"--tokens must be a positive whole number, got {value!r}")
    return int(text) if text.isdigit() else int(number)


def cache(
    model: str = typer.Option(..., "--model", help="minilm, smollm2 or hf:<name> (a local folder or a hub model)."),
    layer: int = typer.Option(..., "--layer", help="Transformer block, 1..n_layers; resid = that block's output."),
    text: list[str] = typer.Option(..., "--text", help="Text file, folder, or hf:DATASET[:CONFIG]; repeat for more."),
    tokens: str = typer.Option(..., "--tokens", help="Activation rows to cache, e.g. 200000 or 2e5."),
    out: Path = typer.Option(..., "--out", help="Store folder to write (an unfinished one is resumed)."),
    site: str = typer.Option("resid", "--site", help="resid (residual stream) or mlp (MLP input/output pairs)."),
    seq_len: int = typer.Option(128, "--seq-len", help="Tokens per text window."),
    batch_size: int = typer.Option(32, "--batch-size", help="Windows per forward pass."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda:0."),
    dtype: str = typer.Option("float32", "--dtype", help="Storage dtype: float32 or float16."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store at --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
) -> None:
    """Cache activations of MODEL at LAYER over TEXT; skips special tokens and position 0."""
    from sae_core.lm.cache import cache_activations

    store = cache_activations(model, layer, site, text, parse_tokens(tokens), out, seq_len=seq_len,
                              batch_size=batch_size, device=device, dtype=dtype, overwrite=overwrite,
                              progress=progress)
    src, extra = store.meta.source, store.meta.extra
    rate = f"{extra['tokens_per_s']:.0f} tok/s" if extra.get("tokens_per_s") else "no new tokens"
    resumed = f", resumed at row {extra['resumed_from_row']}" if extra.get("resumed_from_row") else ""
    typer.echo(f"cached {store.count} rows of {src['model']} layer {src['layer']} {src['site']} "
               f"(n={store.n}, o={store.o}, {store.meta.dtype}) at {rate}{resumed} -> {store.path} "
               f"content_hash {store.content_hash}")


def register(app: typer.Typer) -> None:
    """Attach the `activations` command group to the root app."""
    group = typer.Typer(help="Cache real language-model activations into an ActivationStore.",
                        no_args_is_help=True, rich_markup_mode=None)
    group.command("cache")(cache)
    app.add_typer(group, name="activations")
