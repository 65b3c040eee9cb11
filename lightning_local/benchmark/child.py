"""Launcher of a benchmark run: ties the run's life to the benchmark's, then execs the real command.

``python -m lightning_local.benchmark.child PARENT_PID PROGRAM ARG...`` asks Linux to
send SIGKILL to this process when its parent dies (``PR_SET_PDEATHSIG``, kept
across ``exec``), exits at once if the parent is already gone, and then replaces
itself by ``PROGRAM ARG...``. Doing this in the child (instead of a ``preexec_fn``)
is safe while the benchmark starts runs from several threads.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, program, args = int(argv[0]), argv[1], argv[1:]
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: runs then outlive a killed benchmark
        pass
    if os.getppid() != parent:  # the benchmark died before the signal was armed
        sys.exit(1)
    os.execv(program, args)


if __name__ == "__main__":
    main(sys.argv[1:])
