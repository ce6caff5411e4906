"""The driver's signal and exit-code policy (documented in docs/failure_modes.md).

SIGTERM and SIGINT raise `Interrupted` in the main thread, so every `finally` and context
manager runs (Ray is shut down, the manifest records the interrupted invocation, temp files are
removed); the CLI then prints one line and exits 128 + the signal number. A second signal while
that cleanup runs exits at once with the same code.

Exit codes of `saescale`:
    0    success
    1    a bug (an unexpected exception, with its traceback)
    2    user error: bad spec, option or input file (one `error:` line)
    3    the sweep finished, but some runs failed (their count is printed; rerun to retry)
    74   storage error: disk full, read-only or no permission (one line naming path and cause)
    130  interrupted by SIGINT (Ctrl-C); rerun the same command to resume
    143  interrupted by SIGTERM; rerun the same command to resume
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_FAILED_RUNS = 3
EXIT_STORAGE = 74
INTERRUPTED_LINE = "interrupted; rerun the same command to resume"


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived. A BaseException, so `except Exception` blocks never swallow it."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _handler(signum: int, frame: FrameType | None) -> None:
    # Later signals (a second Ctrl-C, or the SIGINT a terminal sends to the whole process group
    # together with ours) must not interrupt the cleanup: they end the process at once.
    signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, _exit_now)
    raise Interrupted(signum)


def _exit_now(signum: int, frame: FrameType | None) -> None:
    print(INTERRUPTED_LINE, file=sys.stderr, flush=True)
    os._exit(128 + signum)


def install() -> None:
    """Route SIGTERM and SIGINT to `Interrupted` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)
