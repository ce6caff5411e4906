"""Where a sweep slot's time goes, pack by pack, in one process like a Ray worker (no Ray).

Trains the packs of a spec's plan one after another on one thread (a `cpus: 1` slot), once with
a fresh batch stream per pack and once with the stream kept across packs (what sweep tasks do,
TrainOptions.reuse_stream), interleaved pack by pack so a shared machine's slow minutes fall on
both. Per pack: start-up (build + data before the first step ends, i.e. wall - training loop -
eval + the first step), steady training, eval, and the rest of `train_pack`'s wall.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def slot_breakdown(spec: Path, packs: int = 6) -> list[dict[str, Any]]:
    """Per mode (fresh / kept stream): seconds per pack in start-up, training, eval; over `packs` packs of the plan."""
    import sae_core.train as train_module
    from sae_core.train import TrainOptions, train_pack
    from sweeps import load_spec
    from sweeps.data import resolve_data
    from sweeps.plan import build_plan

    parsed = load_spec(spec)
    store, data = resolve_data(parsed)
    plan = build_plan(parsed, store, data)
    chosen = plan.packs(plan.runs)[-packs:]   # the shortest packs: where start-up weighs most
    torch.set_num_threads(max(1, int(parsed.resources.cpus)))
    totals = {mode: {"wall_s": 0.0, "first_step_s": 0.0, "train_s": 0.0, "eval_s": 0.0} for mode in ("fresh", "kept")}
    train_module._KEPT_STREAM.clear()
    for pack in chosen:
        for mode in ("fresh", "kept"):
            options = TrainOptions(threads=None, progress=False, eval_max_rows=parsed.eval_max_rows,
                                   reuse_stream=mode == "kept")
            info = train_pack([r.run for r in pack.runs], store, options, names=[r.run_id for r in pack.runs])[0].info
            t = totals[mode]
            t["wall_s"] += info["wall_s"]
            t["first_step_s"] += info["first_step_wall_s"]
            t["train_s"] += info["train_wall_s"] - info["first_step_wall_s"]
            t["eval_s"] += info["eval_wall_s"]
    train_module._KEPT_STREAM.clear()
    rows = []
    for mode, t in totals.items():
        rest = t["wall_s"] - t["first_step_s"] - t["train_s"] - t["eval_s"]
        rows.append({"mode": mode, "packs": len(chosen), "wall_s_per_pack": t["wall_s"] / len(chosen),
                     "first_step_s_per_pack": t["first_step_s"] / len(chosen),
                     "steady_train_s_per_pack": t["train_s"] / len(chosen), "eval_s_per_pack": t["eval_s"] / len(chosen),
                     "other_s_per_pack": rest / len(chosen),
                     "eval_share": t["eval_s"] / t["wall_s"],
                     "startup_share": (t["first_step_s"] + rest) / t["wall_s"]})
    return rows
