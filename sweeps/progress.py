"""Live sweep progress on stderr: runs done/total, FLOPs done/total, ETA, failures.

On a terminal it is a tqdm bar whose position is FLOPs (so the ETA weighs big runs properly);
otherwise (logs, `ray submit` without a tty, CI) one line at most every `log_every` seconds.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm.auto import tqdm


class Progress:
    """Counts finished runs and FLOPs of this sweep; skipped (already final) runs start it."""

    def __init__(self, name: str, total_runs: int, total_flops: float, done_runs: int, done_flops: float,
                 enabled: bool | None = None, stream: TextIO | None = None, log_every: float = 10.0):
        self.stream = stream or sys.stderr
        self.total_runs, self.done_runs, self.failed = total_runs, done_runs, 0
        self.total_flops, self.done_flops = float(total_flops), float(done_flops)
        self.start_flops = self.done_flops
        self.t0 = time.monotonic()
        self.log_every, self._last_log = log_every, 0.0
        self.name = name
        tty = self.stream.isatty() if enabled is None else enabled
        self.bar = tqdm(total=max(self.total_flops, 1.0), initial=self.done_flops, unit="FLOP", unit_scale=True,
                        file=self.stream, dynamic_ncols=True, desc=self._desc(), disable=not tty,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} FLOP "
                                   "[{elapsed}<{remaining}]{postfix}")
        self.logging = not tty

    def _desc(self) -> str:
        return f"{self.name}: runs {self.done_runs}/{self.total_runs}"

    def update(self, runs: int, flops: float, failed: int = 0) -> None:
        """Record finished runs (any status), their FLOPs, and how many of them failed."""
        self.done_runs += runs
        self.done_flops += flops
        self.failed += failed
        self.total_runs = max(self.total_runs, self.done_runs)
        self.total_flops = max(self.total_flops, self.done_flops)
        self.bar.total = max(self.total_flops, 1.0)
        self.bar.set_description_str(self._desc(), refresh=False)
        self.bar.set_postfix_str(f"failed {self.failed}", refresh=False)
        self.bar.update(flops)
        if self.logging and time.monotonic() - self._last_log >= self.log_every:
            self.log_line()

    def set_totals(self, runs: int, flops: float) -> None:
        """New totals (the Optuna search replaces failed trials, so its work can grow)."""
        self.total_runs, self.total_flops = max(runs, self.done_runs), max(flops, self.done_flops)
        self.bar.total = max(self.total_flops, 1.0)

    def tick(self) -> None:
        """Keep elapsed time and ETA current between results (call about once a second)."""
        self.bar.refresh()
        if self.logging and time.monotonic() - self._last_log >= self.log_every:
            self.log_line()

    def message(self, text: str) -> None:
        """A line above the bar (warnings, failures)."""
        self.bar.write(text, file=self.stream)

    def eta(self) -> float:
        """Seconds left at this sweep's FLOP rate so far (NaN before the first result)."""
        rate = (self.done_flops - self.start_flops) / max(time.monotonic() - self.t0, 1e-9)
        return (self.total_flops - self.done_flops) / rate if rate > 0 else float("nan")

    def log_line(self) -> None:
        self._last_log = time.monotonic()
        eta = self.eta()
        print(f"{self._desc()}, FLOPs {self.done_flops:.3g}/{self.total_flops:.3g}, failed {self.failed}, "
              f"ETA {'?' if eta != eta else f'{eta:.0f}s'}", file=self.stream, flush=True)

    def close(self) -> None:
        self.bar.close()
        if self.logging:
            self.log_line()
