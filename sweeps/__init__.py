"""sweeps: YAML sweep specs expanded into packs of SAE runs, trained on Ray, collected in parquet.

Public API: `run_sweep` (run or resume a sweep), `sweep_status`, `load_spec`, and the
`SweepSpec` schema. Modules: spec (schema), data (activations -> store), plan (cells, runs,
packs), executor (Ray), optuna_search (LR search), results (the results directory), rows
(result columns), progress (the live bar), api (the two entry points).
"""

from sweeps.api import SweepStatus, SweepSummary, run_sweep, sweep_status
from sweeps.spec import SweepSpec, load_spec

__all__ = ["SweepSpec", "SweepStatus", "SweepSummary", "load_spec", "run_sweep", "sweep_status"]
