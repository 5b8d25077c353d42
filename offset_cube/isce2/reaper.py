"""``python -m offset_cube.isce2.reaper PGID PARENT GRACE_S``: end topsApp's whole process group when the
process supervising it dies, even by SIGKILL.

Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``, man 2 prctl) reaches only the child it was set on:
topsApp's own children (DenseAmpcor's forked workers, gdal_translate) would outlive a killed supervisor. This
small process is started beside topsApp with the parent-death signal SIGTERM *blocked* (the mask survives
``exec``, so a signal sent before Python is ready stays pending, not lost) and waits for it with
``sigtimedwait``. When it arrives, or when its parent is found gone, it terminates the group (SIGTERM, then
SIGKILL after the grace period). It exits by itself once the group is empty; the supervisor ends it after a
normal run.
"""

from __future__ import annotations

import os
import signal
import sys

from offset_cube.isce2.runner import group_members, terminate_group

_CHECK_S = 1.0


def reap(pgid: int, parent: int, grace_s: float) -> int:
    """Wait for the parent's death, then terminate group ``pgid``; 0 when the group emptied by itself."""
    while True:
        woken = signal.sigtimedwait({signal.SIGTERM}, _CHECK_S)
        if woken is not None or os.getppid() != parent:
            terminate_group(pgid, grace_s)
            return 1
        if not group_members(pgid):
            return 0


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m offset_cube.isce2.reaper PGID PARENT_PID GRACE_S", file=sys.stderr)
        return 2
    return reap(int(argv[0]), int(argv[1]), float(argv[2]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
