"""A cube writer in its own process, for the crash and concurrency tests.

``python -m tests.cube_writer CUBE PRODUCT...`` prints ``ready`` and then, unless ``--wait-stdin`` is given, inserts
the products into CUBE on the synthetic south grid. With ``--wait-stdin`` it first waits for a line on stdin, so a
test can start several writers and release them together. ``OFFSET_CUBE_CRASH_AT`` makes it SIGKILL itself at
that point of the insert (offset_cube.cube.store).
"""

from __future__ import annotations

import sys
from pathlib import Path

from offset_cube.cube.store import insert_products
from tests.cube_synth import SOUTH_AREA, south_grid


def main(argv: list[str]) -> int:
    wait = "--wait-stdin" in argv
    args = [a for a in argv if a != "--wait-stdin"]
    cube, products = Path(args[0]), [Path(p) for p in args[1:]]
    print("ready", flush=True)
    if wait:
        sys.stdin.readline()
    report = insert_products(cube, products, grid=south_grid(), area_wkt=SOUTH_AREA, lock_timeout_s=120)
    print(f"added {','.join(report.added)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
