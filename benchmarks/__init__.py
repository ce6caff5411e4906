"""Performance harness: trainer FLOP/s against the device's measured matmul peak, stacking
speedup, sweep efficiency, and a peer library at equal shapes. `python -m benchmarks --help`."""


class PeerNotInstalled(RuntimeError):
    """A peer library's benchmark environment is missing (`--install-peer` creates it)."""
