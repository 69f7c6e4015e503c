"""A node process started by ``vla-edge drive`` ends when that supervisor dies.

``ros2 launch`` and ``vla-edge drive --processes N`` stop their nodes with SIGINT. A
supervisor that is SIGKILLed, or crashes, cannot do that, and the nodes it started would
keep running: they hold the DDS topics and the cores, and a restarted graph gets two
publishers on every topic. So the supervisor names itself in :data:`SUPERVISOR_ENV`, and each
node asks the kernel (Linux ``prctl(PR_SET_PDEATHSIG)``) for a SIGINT when its parent dies.
SIGINT, not SIGKILL, so the node shuts down as under Ctrl-C and the recorder closes its bag.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: Environment variable holding the supervisor's pid (set by ``NodeProcesses``).
SUPERVISOR_ENV = "VLA_EDGE_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


def link_to_supervisor(environ: Mapping[str, str] | None = None) -> bool | None:
    """Arm the parent-death signal when a supervisor started this process.

    Returns None when no supervisor is named (``ros2 run``, ``ros2 launch``: launch stops
    its own children) or the platform has no ``prctl``; True once armed; False when the
    supervisor is already gone (it died before the signal was armed), so the caller exits.
    """
    env = os.environ if environ is None else environ
    raw = env.get(SUPERVISOR_ENV, "")
    if not raw.isdigit() or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGINT), 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d)", ctypes.get_errno())
            return None
    except (OSError, AttributeError):
        return None
    # The signal fires only for a death after prctl: check the parent is still the supervisor.
    return os.getppid() == int(raw)
