"""sae_core: SAE recipes, training (single runs and stacked packs), metrics, FLOPs, activation stores.

Pure PyTorch; knows nothing of Ray or sweeps.
"""

from sae_core.config import ResolvedRun, RunConfig
from sae_core.flops import FLOPS_CONVENTION, flops_per_token, run_flops
from sae_core.jumprelu import jumprelu
from sae_core.recipes import Recipe, get_recipe, recipe_names, register_recipe
from sae_core.store import ActivationStore, StoreWriter
from sae_core.synthetic import SyntheticConfig, synthetic_store
from sae_core.train import RunResult, TrainingInterrupted, TrainOptions, train, train_pack

__all__ = [
    "ActivationStore", "FLOPS_CONVENTION", "Recipe", "ResolvedRun", "RunConfig", "RunResult", "StoreWriter",
    "SyntheticConfig", "TrainOptions", "TrainingInterrupted", "flops_per_token", "get_recipe", "jumprelu",
    "recipe_names", "register_recipe", "run_flops", "synthetic_store", "train", "train_pack",
]
