"""Sweep efficiency: the quickstart sweep, end to end on embedded Ray, against the device peak.

efficiency = sum of the runs' FLOPs / (sweep wall time x peak), where wall time is the whole
`run_sweep` call (Ray start, data, training, eval, writing). Orchestration overhead per run =
(wall x concurrent slots - slot-seconds spent inside training loops) / runs: everything a run
costs beyond its training steps (Ray start, task dispatch, init, eval, result writing), spread
over runs. A pack's training loop is counted once (its runs share it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd


def sweep_efficiency(spec: Path, peak: float, results: Path | None = None, gpus: float = 0.0) -> dict[str, Any]:
    """Run `spec` into a fresh results directory and measure it (see module docstring).

    gpus > 0 overrides the spec's `resources.gpus` (e.g. 0.25: four packs share a GPU); its
    slots are then GPU shares (packs running at once), counted against the first GPU."""
    import yaml

    from sweeps import load_spec, run_sweep

    parsed = load_spec(spec)
    source: Path | dict[str, Any] = spec
    if gpus > 0:
        source = yaml.safe_load(Path(spec).read_text())
        source["resources"] = {**source.get("resources", {}), "gpus": gpus}
        parsed = load_spec(source)
    with tempfile.TemporaryDirectory(prefix="saescale-bench-") as tmp:
        out = results or Path(tmp) / parsed.name
        summary = run_sweep(source, results_dir=out, progress=False, log=lambda _msg: None)
        rows = pd.read_parquet(Path(out) / "results.parquet")
    packs = rows.drop_duplicates("pack_id")
    if parsed.resources.gpus == 0:
        slots = max(1, int((os.cpu_count() or 1) // parsed.resources.cpus))
    else:
        slots = max(1, int(1 // parsed.resources.gpus))
    train_slot_s = float(packs["train_wall_s"].sum())
    return {
        "gpus_per_pack": parsed.resources.gpus, "runs": int(len(rows)), "packs": int(len(packs)), "slots": slots, "wall_s": summary.wall_s,
        "ray_start_s": summary.timings.get("ray_start_s", float("nan")), "data_s": summary.timings.get("data_s", 0.0),
        "train_wall_s": train_slot_s, "eval_wall_s": float(packs["eval_wall_s"].sum()),
        "total_flops": float(rows["flops"].sum()),
        "efficiency": float(rows["flops"].sum()) / (summary.wall_s * peak),
        "overhead_s_per_run": (summary.wall_s * slots - train_slot_s) / len(rows),
    }
