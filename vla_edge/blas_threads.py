"""One OpenBLAS thread per process on the vehicle path, set before numpy loads OpenBLAS.

numpy's OpenBLAS starts one spinning thread per core. In the drive graph each node process is
busy on its own core (the model in one, the planner in the other), so a small matrix product,
such as the 3 x 3 transform of a 210k-point sweep, waited for the other process's core: it took
~20 % of both processes, and 40 % of the sweeps were dropped (docs/profiling.md). With one
thread, none were. OpenBLAS reads the variable once, when numpy is first imported, so this runs
from ``vla_edge.nodes`` (imported before any node module) and from the ``vla-edge`` entry point
(which imports no numpy before it). A value already in the environment, e.g. from a launch
file, wins.
"""

from __future__ import annotations

import os
import sys

BLAS_THREADS_VAR = "OPENBLAS_NUM_THREADS"


def limit_blas_threads(n: int = 1) -> bool:
    """Set ``OPENBLAS_NUM_THREADS`` to ``n`` unless it is set; True when it will take effect
    (numpy not imported yet in this process; child processes inherit it either way)."""
    os.environ.setdefault(BLAS_THREADS_VAR, str(n))
    return "numpy" not in sys.modules
