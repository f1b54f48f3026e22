"""Start a program so that the kernel kills it when its parent dies: HAProxy for Ray Serve.

Ray Serve's HAProxy manager (a Ray actor: of the local Ray that ``redblue deploy`` starts, or of
each serving node of a cluster) spawns HAProxy. Ray's own processes die with the deploy that
started them, but HAProxy would outlive a deploy (or an actor) killed before its cleanup ran
(SIGKILL, the OOM killer), reparented to init and still listening. Run as ``python -I
haproxy_launcher.py PARENT_PID PROGRAM ARGS...`` (by ``haproxy_wrapper.sh``, the HAProxy binary
Redblue gives Ray: PROGRAM is the Python that runs :mod:`orchestrator.serving.haproxy_rewrite`,
which ``exec``s HAProxy): it asks Linux for SIGKILL when the parent dies
(``prctl(PR_SET_PDEATHSIG)``, kept across ``exec``), checks the parent is still ``PARENT_PID`` (it
may have died before the request), then ``exec``s PROGRAM, which keeps this process's pid (Ray
signals that pid on reloads). Standard library only: ``-I`` ignores the environment's Python
paths.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
EXIT_PARENT_GONE = 3


def die_with_parent(parent_pid: int) -> bool:
    """Ask for SIGKILL when the parent dies; False when the parent is already gone."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    return os.getppid() == parent_pid


def main(argv: list[str]) -> int:
    if len(argv) < 3 or not argv[1].isdigit():
        sys.stderr.write("usage: haproxy_launcher.py PARENT_PID PROGRAM [ARGS...]\n")
        return 2
    if not die_with_parent(int(argv[1])):
        sys.stderr.write("haproxy_launcher: the parent exited before the program started\n")
        return EXIT_PARENT_GONE
    os.execv(argv[2], argv[2:])
    return 1  # not reached: execv replaces this process or raises


if __name__ == "__main__":
    sys.exit(main(sys.argv))
