"""offset-cube: glacier velocity cubes from Sentinel-1 dense offsets.

This package holds the domain code (config, scenes, planning, readers, tracker, geometry, cube); it never
imports Prefect. Orchestration lives in the top-level ``flows`` and ``tasks`` packages.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("offset-cube")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
