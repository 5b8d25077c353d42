"""Silencing an expected warning from code that runs in threads.

``warnings.catch_warnings`` swaps the process-wide filter list on entry and puts the saved list back on exit
(the Python documentation of :mod:`warnings` says it is not thread-safe): two threads inside it at once put the
lists back out of order, and one thread's "ignore" is then gone while the other still relies on it. The flow
downloads, reads and writes in thread pools (two dates' bursts, two pairs' products at once), so every place that
silences an expected warning goes through :func:`quiet_warnings`, which holds one lock for the short call it
wraps. Never hold it across a ``yield`` or a long computation.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_LOCK = threading.RLock()


@contextlib.contextmanager
def quiet_warnings(category: type[Warning] = Warning, message: str = "") -> Iterator[None]:
    """Ignore warnings of ``category`` whose text starts with ``message`` (a regular expression) for a short call."""
    with _LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=message, category=category)
        yield


def open_raster(path: str | Path, mode: str = "r", **profile: Any) -> Any:
    """``rasterio.open`` for radar-geometry images (Sentinel-1 measurement TIFFs, ISCE products): they carry GCPs
    or nothing, never a geotransform, so rasterio's ``NotGeoreferencedWarning`` at open is expected."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with quiet_warnings(NotGeoreferencedWarning):
        return rasterio.open(path, mode, **profile)
