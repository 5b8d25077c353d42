"""Scene files: verify local SAFE products; download and verify ASF products (see the download issue)."""

from __future__ import annotations

from pathlib import Path

from offset_cube.errors import DownloadError, SafeError
from offset_cube.safe.archive import SafeArchive
from offset_cube.scenes import Scene


def verify_local_scene(scene: Scene) -> Path:
    """Check that a local catalog's SAFE opens and holds a manifest, annotation and measurement members."""
    path = scene.local_path
    if path is None:
        raise DownloadError(f"{scene.product_id} has no local path")
    try:
        with SafeArchive(path) as archive:
            annotations = archive.glob("annotation/s1?-iw?-slc-*.xml")
            measurements = archive.glob("measurement/s1?-iw?-slc-*.tif*")
    except SafeError as err:
        raise DownloadError(f"local scene {path}: {err}") from err
    if not annotations or not measurements:
        raise DownloadError(
            f"local scene {path} lacks {'annotation' if not annotations else 'measurement'} files for IW SLC swaths"
        )
    return path
