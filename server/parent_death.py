"""Die with the parent process (Linux prctl PR_SET_PDEATHSIG), so that solver processes never
outlive the server, whatever killed it (SIGKILL, the OOM killer).

The chain is: server -> forkserver -> workers. The forkserver arms this when it starts (it
imports server.forkserver_preload), each worker in its initializer; when the server dies the
kernel kills the forkserver, whose death kills the workers. The kernel ties the signal to the
parent *thread*: the pool must be started from a thread that lives as long as the server (the
event loop's), as SolverPool is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent exits; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    # The parent may have died before the call: then nobody would send the signal.
    if os.getppid() == 1:
        os._exit(1)
    return True
