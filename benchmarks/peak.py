"""The device's dense matmul peak, measured in the calling process (the denominator of every ratio)."""

from __future__ import annotations

import time

import torch

# Sizes and seconds of the peak measurement when a caller gives none; `configure` changes them
# for a whole command (`python -m benchmarks --peak-sizes 64 --peak-seconds 0.05 ...` at toy sizes).
_DEFAULTS: dict[str, object] = {"sizes": None, "seconds": None}


def configure(sizes: tuple[int, ...] | None, seconds: float | None) -> None:
    """Set the default GEMM sizes and seconds of every later `matmul_peak` call (None: built-in)."""
    _DEFAULTS["sizes"], _DEFAULTS["seconds"] = sizes, seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                sizes: tuple[int, ...] | None = None, seconds: float | None = None) -> dict[str, float]:
    """Best achieved FLOP/s of square GEMMs (2 n^3 FLOPs each) over `sizes`, each timed >= `seconds`.

    On CUDA, fp32 GEMMs run with TF32 disabled unless dtype is given as "tf32" by the caller
    via torch.backends settings; bf16 uses bf16 inputs and outputs.
    """
    device = torch.device(device)
    configured = _DEFAULTS["seconds"]
    seconds = float(configured) if configured is not None else (1.0 if seconds is None else seconds)
    sizes = sizes or _DEFAULTS["sizes"] or ((1024, 2048, 3072) if device.type == "cpu" else (4096, 8192))
    best, best_size = 0.0, 0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        torch.mm(a, b)
        _sync(device)
        reps, elapsed = 0, 0.0
        t0 = time.perf_counter()
        while elapsed < seconds or reps < 3:
            torch.mm(a, b)
            reps += 1
            if device.type == "cuda" and reps % 10:
                continue
            _sync(device)
            elapsed = time.perf_counter() - t0
        _sync(device)
        elapsed = time.perf_counter() - t0
        rate = 2 * n**3 * reps / elapsed
        if rate > best:
            best, best_size = rate, n
    return {"flops_per_s": best, "size": best_size, "dtype": str(dtype).replace("torch.", ""),
            "device": device_name(device), "threads": torch.get_num_threads()}


def device_name(device: torch.device) -> str:
    """A human description of the device (CPU model or GPU name)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"cpu ({torch.get_num_threads()} threads)"
