"""saescale: scaling-law sweeps for sparse autoencoders (CLI package; the work lives in
sae_core, sweeps and analysis)."""

__version__ = "0.1.0"
