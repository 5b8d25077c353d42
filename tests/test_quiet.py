"""Expected warnings are silenced safely from threads (offset_cube.quiet).

The flow downloads two dates' bursts and writes two pairs' products at once in threads; each opens radar TIFFs
without a geotransform, which makes rasterio warn. Silenced with bare ``warnings.catch_warnings`` in each thread,
one thread put the filter list back while the other was still opening, and under the test suite's "warnings are
errors" the burst demo failed with ``NotGeoreferencedWarning`` (seen once in a full run).
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from offset_cube import quiet
from offset_cube.quiet import open_raster

THREADS, OPENS = 4, 150


def _hammer(path: Path) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def work() -> None:
        start.wait()
        try:
            for _ in range(OPENS):
                open_raster(path).close()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as the test suite runs: a warning that escapes is an error
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return errors


@pytest.fixture
def radar_tiff(tmp_path: Path) -> Path:
    path = tmp_path / "radar.tiff"
    profile = {"driver": "GTiff", "dtype": "complex_int16", "width": 16, "height": 16, "count": 1}
    with open_raster(path, "w", **profile) as ds:
        ds.write(np.ones((16, 16), np.complex64), 1)
    return path


def test_threads_opening_radar_tiffs_never_see_the_warning(radar_tiff: Path) -> None:
    assert _hammer(radar_tiff) == []


def test_a_second_thread_waits_until_the_first_has_put_the_filters_back(radar_tiff: Path) -> None:
    """The interleaving that failed: B enters while A is inside, A leaves (restoring the filters without B's
    "ignore"), B opens. With the lock B cannot enter until A has left, so B's own "ignore" is in force."""
    a_inside, b_entered, b_done = threading.Event(), threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def b() -> None:
        a_inside.wait()
        try:
            with quiet.quiet_warnings(NotGeoreferencedWarning):
                b_entered.set()
                rasterio.open(radar_tiff).close()
        except BaseException as err:
            failures.append(err)
        b_done.set()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        thread = threading.Thread(target=b)
        thread.start()
        with quiet.quiet_warnings(NotGeoreferencedWarning):
            a_inside.set()
            assert not b_entered.wait(0.3)  # B is held at the door while A's filters are in place
        assert b_done.wait(30)
        thread.join()
    assert failures == []
