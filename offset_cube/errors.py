"""The project's exception hierarchy.

Every error says which value was wrong and what would be valid. Each class also subclasses the builtin that
matches its meaning, so callers that only know the builtins still catch them sensibly.
"""

from __future__ import annotations


class OffsetCubeError(Exception):
    """Base class of every error raised on purpose by offset-cube."""


class ConfigError(OffsetCubeError, ValueError):
    """A job configuration (YAML, flags or flow parameter) is invalid."""


class AreaError(ConfigError):
    """The area of interest cannot be parsed or is not a usable polygon."""


class SceneNameError(OffsetCubeError, ValueError):
    """A Sentinel-1 product id does not parse or names a product we cannot use."""


class SearchError(OffsetCubeError, RuntimeError):
    """A scene search failed (ASF unreachable, bad export file, unreadable catalog folder)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        #: True when retrying later may succeed (network down, ASF 5xx).
        self.transient = transient


class PlanError(OffsetCubeError, ValueError):
    """Scenes cannot be turned into pairs (for example a catalog with mixed polarisations only)."""


class DownloadError(OffsetCubeError, RuntimeError):
    """A scene could not be downloaded or verified."""


class TransientDownloadError(DownloadError):
    """A download failed in a way that a retry may fix (5xx, timeout, truncated or corrupt transfer)."""

    #: Read by the task layer's retry condition (tasks._common.retry_if_transient).
    transient = True


class AuthenticationError(DownloadError, PermissionError):
    """Credentials are missing or were refused; retrying does not help."""


class PairDeferred(OffsetCubeError):
    """The pair cannot run yet (e.g. its precise orbit is not published); a later run will pick it up."""


class PairSkipped(OffsetCubeError):
    """The pair was processed but its product is not worth a layer (reported as skipped, not failed)."""


class OrbitError(OffsetCubeError, RuntimeError):
    """No valid orbit file could be found or a candidate file is invalid."""


class TransientOrbitError(OrbitError):
    """An orbit source could not be reached or answered 5xx/429; a retry may succeed."""

    transient = True


class DemError(OffsetCubeError, RuntimeError):
    """A DEM could not be fetched, built or read."""


class EngineError(OffsetCubeError, RuntimeError):
    """An offset engine (built-in or ISCE2) failed for a pair."""


class TrackingError(OffsetCubeError, ValueError):
    """Tracker inputs or parameters are invalid."""


class SafeError(OffsetCubeError, ValueError):
    """A SAFE product cannot be read or does not hold what the pair needs."""


class CubeError(OffsetCubeError, RuntimeError):
    """The cube cannot be written or does not match the job."""
