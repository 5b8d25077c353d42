"""Stand-in for the installed ``isce`` package (tests only), importable so ``offset-cube doctor`` can probe it."""

from .release_history import release_version as __version__  # noqa: F401  (what ISCE's __init__ exports)
