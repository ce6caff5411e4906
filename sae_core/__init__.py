"""sae_core: SAE recipes, training (single runs and stacked packs), metrics, FLOPs, activation stores.

Pure PyTorch; knows nothing of Ray or sweeps. Import from the submodules (`sae_core.train`,
`sae_core.store`, ...). This file imports nothing, so the torch-free basics that every layer
shares (`sae_core.errors`, `sae_core.files`) load without torch, and `analysis` stays free of it.
"""
