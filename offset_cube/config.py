"""The job description: one pydantic model, loadable from YAML, usable as the Prefect flow's parameter.

Conventions used by every field:
- window, search and skip sizes are ``(width, height)`` = (range samples, azimuth lines);
- ``search`` is the *half* search range, as ISCE2's Ampcor properties;
- speeds are metres per year (365.25 days), distances metres, times days unless the name says otherwise;
- relative paths are made absolute when the model is built, so the flow (which may run in another process)
  always receives absolute paths: those of a job file against the file's folder (the folder can be moved with
  its job), all others against the current directory.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from offset_cube.area import area_to_wkt, parse_area
from offset_cube.atomic import folder_problem
from offset_cube.errors import ConfigError
from offset_cube.safe.archive import UNPACKED_DIR_NAME
from offset_cube.size import Size


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """``value`` made absolute: against the job file's folder (validation context ``base``), else the current one."""
    value = value.expanduser()
    base = (info.context or {}).get("base")
    return (Path(base) / value if base is not None and not value.is_absolute() else value).absolute()


#: Sentinel-1A's first IW SLC data available from ASF (the mission's routine operations began 2014-10-03).
S1_FIRST_DATA = dt.date(2014, 10, 3)


class Engine(StrEnum):
    BUILTIN = "builtin"
    ISCE2 = "isce2"


class FlightDirection(StrEnum):
    ASCENDING = "ASCENDING"
    DESCENDING = "DESCENDING"


class Polarization(StrEnum):
    HH = "HH"
    VV = "VV"
    HV = "HV"
    VH = "VH"


class AcquisitionMode(StrEnum):
    BURSTS = "bursts"
    SCENES = "scenes"


class TrackingMode(StrEnum):
    AMPLITUDE = "amplitude"
    COMPLEX = "complex"


class Swath(StrEnum):
    IW1 = "IW1"
    IW2 = "IW2"
    IW3 = "IW3"


def _size_pair(value: Any) -> Any:
    """Accept ``[w, h]``, ``(w, h)``, ``"WxH"`` or a single int (square)."""
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        if len(parts) != 2:
            raise ValueError(f"{value!r} is not WIDTHxHEIGHT (e.g. 64x16)")
        try:
            return (int(parts[0]), int(parts[1]))
        except ValueError as err:
            raise ValueError(f"{value!r} is not WIDTHxHEIGHT with whole numbers (e.g. 64x16)") from err
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


#: Largest window, search or skip size in pixels.
MAX_SIZE_PX = 4096


def _size_in_bounds(value: Size) -> Size:
    if not (1 <= value.width <= MAX_SIZE_PX and 1 <= value.height <= MAX_SIZE_PX):
        raise ValueError(f"sizes must be between 1 and {MAX_SIZE_PX} pixels; got {value}")
    return value


#: A (width, height) size from ``[w, h]``, ``"WxH"`` or one int (square).
SizeField = Annotated[Size, BeforeValidator(_size_pair), AfterValidator(_size_in_bounds)]
#: A path made absolute when the model is built (``~`` expanded; relative to the job file's folder, else to the
#: current directory).
AbsolutePath = Annotated[Path, AfterValidator(_resolve)]


@dataclass(frozen=True)
class SearchSource:
    """Where scenes are searched: ASF (``asf``), an ASF GeoJSON / CMR UMM export (``file:PATH``) or a folder of
    SAFE zips (``local:FOLDER``). Written back as that text."""

    kind: Literal["asf", "file", "local"]
    path: Path | None = None

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"

    @classmethod
    def parse(cls, value: Any, info: ValidationInfo | None = None) -> SearchSource:
        """Parse ``asf``, ``file:PATH`` or ``local:FOLDER`` (the path made absolute — against the job file's folder
        when ``info`` carries one — and checked to exist)."""
        if isinstance(value, SearchSource):
            return value
        kind, _, arg = str(value).partition(":")
        if kind == "asf" and not arg:
            return cls("asf")
        if kind in ("file", "local") and arg:
            path = _resolve(Path(arg), info) if info is not None else Path(arg).expanduser().absolute()
            if kind == "file" and not path.is_file():
                raise ValueError(f"search file {arg!r} does not exist")
            if kind == "local" and not path.is_dir():
                raise ValueError(f"local catalog folder {arg!r} does not exist")
            return cls("file" if kind == "file" else "local", path)
        raise ValueError(f"search {value!r} is not one of 'asf', 'file:PATH', 'local:FOLDER'")


def _search_source(value: Any, info: ValidationInfo) -> SearchSource:
    return SearchSource.parse(value, info)


SearchSourceField = Annotated[
    SearchSource,
    PlainValidator(_search_source),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "examples": ["asf", "file:PATH", "local:FOLDER"]}),
]


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are re-validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


class TrackingConfig(StrictModel):
    """Dense-offset tracking parameters shared by both engines."""

    window: SizeField = Field(
        Size(64, 16), description="Correlation window (width, height) in (range samples, azimuth lines)."
    )
    search: SizeField | None = Field(
        None,
        description=(
            "Half search range (width, height) in pixels for a pair `search_reference_days` apart; scaled "
            "linearly with each pair's time separation. None: derived from `max_speed_m_per_yr` only."
        ),
    )
    search_reference_days: float = Field(
        12.0, gt=0, le=366, description="Time separation (days) at which `search` applies."
    )
    skip: SizeField = Field(Size(32, 8), description="Output sampling (width, height): one offset every skip pixels.")
    oversampling: int = Field(
        32, ge=1, le=256, description="Correlation-surface oversampling factor (a power of two, as ISCE2)."
    )
    mode: TrackingMode = Field(
        TrackingMode.AMPLITUDE,
        description=(
            "'amplitude' (incoherent, robust over fast ice) or 'complex' (coherent, most precise; built-in engine "
            "only: topsApp correlates amplitudes)."
        ),
    )
    search_margin_px: int = Field(
        2,
        ge=0,
        le=64,
        description="Pixels added to the speed-derived search so the peak never sits on its border.",
    )

    _mode_lower = field_validator("mode", mode="before")(_lower)

    @field_validator("oversampling")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"oversampling must be a power of two (1, 2, 4, ... 256); got {value}")
        return value


class GridConfig(StrictModel):
    """The cube's fixed map grid."""

    crs: str = Field(
        "auto",
        description=(
            "'auto' (EPSG:3031 south of -60°, EPSG:3413 north of 60°, else the UTM zone of the area's centroid) "
            "or any CRS pyproj understands, e.g. 'EPSG:32633'."
        ),
    )
    spacing_m: float = Field(120.0, ge=10.0, le=10_000.0, description="Grid spacing in metres (ITS_LIVE: 120).")

    @field_validator("crs")
    @classmethod
    def _known_crs(cls, value: str) -> str:
        if value.strip().lower() == "auto":
            return "auto"
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            crs = CRS.from_user_input(value)
        except CRSError as err:
            raise ValueError(f"grid.crs {value!r} is not a CRS pyproj knows (e.g. 'auto', 'EPSG:3031')") from err
        if not crs.is_projected:
            raise ValueError(f"grid.crs {value!r} is not a projected CRS; velocities need metres")
        return value


class StorageConfig(StrictModel):
    """Where things are written. Unset folders default to sub-folders of `out`."""

    out: AbsolutePath = Field(Path("offset-cube-output"), description="Root folder of this job's outputs.")
    scene_cache: AbsolutePath | None = Field(None, description="Downloaded SAFE zips (default: <out>/scenes).")
    orbit_cache: AbsolutePath | None = Field(
        None, description="Orbit .EOF files; may be pre-filled (default: <out>/orbits)."
    )
    work: AbsolutePath | None = Field(None, description="Per-pair working folders (default: <out>/pairs).")
    cube: AbsolutePath | None = Field(None, description="The velocity cube Zarr store (default: <out>/cube.zarr).")
    cube_lock_timeout_s: float = Field(
        3600.0, ge=0, le=7 * 86400, description="How long a cube insert waits for another writer to finish."
    )

    @property
    def scene_dir(self) -> Path:
        return self.scene_cache or self.out / "scenes"

    @property
    def unpacked_dir(self) -> Path:
        """Where zipped measurement TIFFs are unpacked (``builtin.unpack_measurements``)."""
        return self.scene_dir / UNPACKED_DIR_NAME

    @property
    def orbit_dir(self) -> Path:
        return self.orbit_cache or self.out / "orbits"

    @property
    def pairs_dir(self) -> Path:
        return self.work or self.out / "pairs"

    @property
    def cube_path(self) -> Path:
        return self.cube or self.out / "cube.zarr"

    def check_writable(self) -> None:
        """Raise :class:`ConfigError` unless every output folder exists or can be created, and can be written:
        checked before any work, so a bad ``out`` ends at once and writes nothing."""
        named = {"storage.out": self.out, "storage.scene_cache": self.scene_dir, "storage.orbit_cache": self.orbit_dir}
        named |= {"storage.work": self.pairs_dir, "storage.cube": self.cube_path.parent}
        for name, folder in named.items():
            problem = folder_problem(folder)
            if problem is not None:
                raise ConfigError(f"{name} {folder}: {problem}; give a folder you can write to (created if missing)")


class Isce2Config(StrictModel):
    """How to find and run ISCE2's topsApp.py (engine: isce2)."""

    python: AbsolutePath | None = Field(None, description="Python executable of the ISCE2 environment.")
    conda_prefix: AbsolutePath | None = Field(None, description="Conda environment prefix holding ISCE2.")
    isce_home: AbsolutePath | None = Field(None, description="ISCE_HOME (the installed `isce` package folder).")
    pythonpath: list[AbsolutePath] = Field(
        default_factory=list,
        description=(
            "Folders put first on topsApp's PYTHONPATH. A source (CMake/SCons) build needs the folder holding "
            "`isce`; it is added by itself for those layouts, so this is for anything else ISCE2 must import."
        ),
    )
    geocode_dem: AbsolutePath | None = Field(None, description="Coarser DEM defining the geocoded grid (optional).")
    omp_num_threads: int = Field(2, ge=1, le=256, description="OMP_NUM_THREADS for topsApp.")
    deadline_hours: float = Field(8.0, gt=0, le=168, description="Kill topsApp's process group after this.")
    use_gpu: bool = Field(False, description="topsApp `use GPU` (silently CPU on conda-forge builds).")
    snr_threshold_factor: float | None = Field(
        None, ge=0, description="topsApp `SNR Threshold factor` for filteroffsets; None disables masking."
    )
    roi_margin_deg: float | None = Field(
        None,
        ge=0,
        le=5,
        description=(
            "None (default): topsApp's region of interest is chosen so that it keeps only the bursts holding the "
            "area (ISCE's burst-box rule applied to both dates' annotations). A number: the area's bounding box "
            "plus this margin (degrees); topsApp then keeps every burst whose padded box meets it."
        ),
    )
    geocode_margin_deg: float = Field(0.02, ge=0, le=5, description="Margin around the clip box for geocoding.")

    @field_validator("pythonpath", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        return [p for p in value.split(":") if p] if isinstance(value, str) else value


class BuiltinConfig(StrictModel):
    """Options of the built-in engine (SAFE zips → offsets without ISCE2)."""

    backend: Literal["numpy", "cupy"] = Field("numpy", description="Tracker backend.")
    workers: int = Field(2, ge=1, le=256, description="Threads for the tracker's FFTs and tiles.")
    memory_budget_mb: int = Field(512, ge=32, le=1_000_000, description="Tracker working memory per tile batch.")
    tracking_path: Literal["auto", "dense", "window"] = Field(
        "auto",
        description="Amplitude tracking: 'dense' shares the work of overlapping windows, 'window' correlates chip by "
        "chip, 'auto' picks the cheaper (offsets agree within 0.005 px RMS).",
    )
    bias_removal: Literal["none", "median", "plane"] = Field(
        "median", description="Residual offset bias removal over stable ground (or the slowest quantile)."
    )
    stable_quantile: float = Field(
        0.2, gt=0, le=1, description="Fraction of slowest windows treated as stable when no mask is given."
    )
    whitening: bool = Field(
        True,
        description="Complex tracking: undo the annotated Hamming weighting of both processing bands and equalise "
        "the local backscatter power of each burst before correlating (maximum-likelihood weights: reaches the "
        "coherent Cramér-Rao bound, and bright features no longer bias windows over shear margins). Amplitude "
        "tracking is never whitened.",
    )
    unpack_measurements: bool = Field(
        True,
        description="Unpack each zipped measurement TIFF the engine reads into storage.scene_cache/unpacked/ on "
        "first use (verified), so that a scene used by several pairs is inflated once, not once per pair; costs "
        "the TIFF's size on disk (~1.3 GB per IW swath of a whole-scene zip), removed with the zip by "
        "cleanup.delete_scenes.",
    )


#: Copernicus DEM GLO-30 on AWS's Registry of Open Data (https://registry.opendata.aws/copernicus-dem/).
GLO30_URL = "https://copernicus-dem-30m.s3.amazonaws.com"
#: EGM2008 geoid heights on a 1' grid, the grid dem-stitcher uses for GLO-30 (ARIA's public bucket).
EGM2008_URL = "https://aria-geoid.s3.us-west-2.amazonaws.com/us_nga_egm2008_1_4326__agisoft.tif"
_URL_PATTERN = r"^(https?://[^\s/]+(/[^\s]*)?|file://\S+)$"


def _dem_source(value: Any) -> Any:
    """``dem: auto`` / ``dem: none`` / ``dem: PATH`` are shorthands of ``dem: {source: ...}``."""
    if isinstance(value, str | Path):
        return {"source": str(value)}
    return value


class DemConfig(StrictModel):
    """Terrain heights for both engines' geometry (``dem: auto | none | PATH``, or this mapping)."""

    source: str = Field(
        "auto",
        description=(
            "'auto': Copernicus GLO-30 tiles for the area plus `margin_m`, mosaicked, converted from EGM2008 to "
            "WGS84 ellipsoid heights and cached; 'none': the constant `height_m`; or a DEM file (GeoTIFF of "
            "ellipsoidal heights in any CRS, or an ISCE raster with its .xml)."
        ),
    )
    height_m: float = Field(
        0.0, ge=-500, le=9000, description="Constant ellipsoidal height (m) used everywhere with `source: none`."
    )
    margin_m: float = Field(
        10_000.0,
        ge=0,
        le=200_000,
        description=(
            "Margin (m) around the area's bounding box that the automatic DEM covers (radar footprint); "
            "at least a quarter of the area's longest side."
        ),
    )
    tiles_url: str = Field(
        GLO30_URL,
        description=(
            "Where GLO-30 tiles are fetched from (http(s)://, file:// or a local folder, laid out as the public "
            "bucket)."
        ),
    )
    geoid_url: str = Field(
        EGM2008_URL,
        description=(
            "The EGM2008 geoid grid (GeoTIFF: http(s)://, file:// or a local path) that converts GLO-30 to ellipsoid."
        ),
    )
    cache: AbsolutePath | None = Field(None, description="Tiles and per-area mosaics (default: <storage.out>/dem).")
    retries: int = Field(3, ge=0, le=20, description="Retries of a tile or geoid fetch that failed transiently.")
    retry_delay_s: float = Field(5.0, ge=0, le=3600, description="First retry delay; doubles each retry.")
    timeout_s: float = Field(120.0, gt=0, le=3600, description="Socket timeout of one HTTP connect or read.")

    @field_validator("tiles_url", "geoid_url")
    @classmethod
    def _url_or_path(cls, value: str, info: ValidationInfo) -> str:
        """A URL as given; a local path (relative to the job file's folder) as its file:// URL."""
        text = value.strip()
        if re.fullmatch(_URL_PATTERN, text):
            return text
        if not text or "://" in text:
            raise ValueError(f"{text!r} is not an http(s):// or file:// URL or a local path")
        return _resolve(Path(text), info).as_uri()

    @field_validator("source")
    @classmethod
    def _source(cls, value: str, info: ValidationInfo) -> str:
        text = value.strip()
        if text.lower() in ("auto", "none"):
            return text.lower()
        path = _resolve(Path(text), info)
        if path.suffix == ".xml":
            path = path.with_suffix("")
        if not (path.is_file() or path.with_name(path.name + ".xml").is_file()):
            raise ValueError(
                f"DEM {text!r} does not exist; give 'auto', 'none', a GeoTIFF or an ISCE raster (with its .xml)"
            )
        return str(path)

    @property
    def path(self) -> Path | None:
        """The user's DEM file (None for 'auto' and 'none')."""
        return None if self.source in ("auto", "none") else Path(self.source)


class ProductConfig(StrictModel):
    """Masking of the per-pair product before it enters the cube."""

    snr_threshold: float = Field(4.0, ge=0, le=1000, description="Offsets with SNR below this are invalid.")
    outlier_mad_k: float = Field(5.0, gt=0, le=100, description="Invalid where |value - local median| > k * local MAD.")
    outlier_window: int = Field(
        5, ge=3, le=51, description="Local median window (odd), in points of the engine's offset grid."
    )
    min_coverage_pct: float = Field(
        1.0,
        ge=0,
        le=100,
        description=(
            "A pair whose product has fewer valid cells than this (% of the area's cells) is skipped, with the "
            "reason in the run summary, and never becomes a layer; an empty product is always skipped."
        ),
    )
    stable_mask: AbsolutePath | None = Field(
        None,
        description=(
            "Raster of stable ground (GeoTIFF or any GDAL raster with a CRS; non-zero = bedrock that does not move) "
            "for each layer's stable-surface shift and errors; default: the layer's own slow cells."
        ),
    )
    stable_shift: Literal["mask", "always", "never"] = Field(
        "mask",
        description=(
            "When to subtract each layer's remaining stable-ground shift (vx/vy_stable_shift) from it: 'mask' only "
            "with a stable_mask; 'always' also with the layer's slow cells (wrong where the whole area moves)."
        ),
    )
    replace: bool = Field(
        False,
        description=(
            "Reprocess pairs already in the cube and replace their layers (`offset-cube run --replace`); "
            "otherwise they are skipped. Meant for a one-off rerun with new parameters, not for schedules."
        ),
    )

    @field_validator("stable_mask")
    @classmethod
    def _mask_exists(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        path = value  # made absolute by AbsolutePath (against the job file's folder)
        if not path.is_file():
            raise ValueError(f"stable_mask {str(value)!r} is not a file; give a raster of stable ground")
        return path

    @field_validator("outlier_window")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"outlier_window must be odd; got {value}")
        return value


class DownloadConfig(StrictModel):
    """Scene downloads from ASF."""

    earthdata_secret: str | None = Field(
        None,
        description=(
            "Name of a Prefect Secret block holding Earthdata credentials ('user:password' or a token). "
            "Falls back to EARTHDATA_USERNAME/EARTHDATA_PASSWORD or EARTHDATA_TOKEN, then ~/.netrc."
        ),
    )
    retries: int = Field(4, ge=0, le=20, description="Retries of a transient download failure.")
    retry_delay_s: float = Field(30.0, ge=0, le=3600, description="First retry delay; doubles each retry.")
    timeout_s: float = Field(
        120.0, gt=0, le=3600, description="Socket timeout of one HTTP connect or read (scene and orbit downloads)."
    )
    deadline_s: float = Field(
        6 * 3600.0,
        gt=0,
        le=7 * 86400,
        description=(
            "Longest one transfer of a scene may take (then it is cut off and retried): the socket timeout never "
            "ends a server that keeps sending a byte now and then."
        ),
    )
    min_rate_bytes_per_s: float = Field(
        20_000.0,
        ge=0,
        description="Lowest acceptable transfer rate over rate_window_s (bytes/s; 0 = no check); slower is retried.",
    )
    rate_window_s: float = Field(
        300.0, gt=0, le=86400, description="Window over which the transfer rate is measured (s)."
    )
    anonymous: bool = Field(
        False,
        description="The download server needs no Earthdata login (a local mirror, the offline demo's burst "
        "server): no credentials are looked up or sent.",
    )
    edl_host: str = Field(
        "urs.earthdata.nasa.gov",
        pattern=r"^[A-Za-z0-9.-]+$",
        max_length=253,
        description=(
            "Earthdata Login host: the only host that receives a username/password, on ASF's download redirect. "
            "Change only for a mirror or a test."
        ),
    )


class OrbitConfig(StrictModel):
    """Precise/restituted orbit files."""

    allow_resorb: bool = Field(
        False,
        description=(
            "Use a restituted orbit (RESORB) when no precise one (POEORB, published ~20 days later) exists; "
            "otherwise the pair is deferred to a later run."
        ),
    )
    allow_annotation: bool = Field(
        False, description="Built-in engine only: fall back to the SAFE annotation's state vectors."
    )
    cdse_secret: str | None = Field(
        None,
        description=(
            "Prefect Secret block with Copernicus Data Space credentials ('user:password'); else CDSE_USERNAME/"
            "CDSE_PASSWORD or ~/.netrc 'machine dataspace.copernicus.eu'. CDSE is asked only when one is set."
        ),
    )
    asf_bucket_url: str = Field(
        "https://s1-orbits.s3.amazonaws.com",
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="ASF's public orbit bucket (anonymous S3 listing). Change only for a mirror or a test.",
    )


class CleanupConfig(StrictModel):
    """What to delete once it is no longer needed."""

    delete_scenes: bool = Field(False, description="Delete a SAFE zip once every pair that needs it finished.")
    pair_files: Literal["keep", "minimal"] = Field(
        "minimal",
        description=(
            "ISCE2 engine: 'minimal' keeps in each pair folder only what a rerun and a user need (the topsApp XML "
            "inputs, topsApp.log, ISCE's geocoded offset rasters merged/*.geo, offsets.zarr and the product); "
            "'keep' leaves all of topsApp's working files (merged SLCs, geom_reference, fine_*), about 2.2 GB "
            "per burst kept (9.0 GB for a measured pair of 4 bursts), for debugging."
        ),
    )


class ConcurrencyConfig(StrictModel):
    """Limits on parallel work."""

    pairs: int = Field(2, ge=1, le=256, description="Pairs processed at once.")
    downloads: int = Field(2, ge=1, le=32, description="Scene downloads at once in a flow run.")
    engines: int = Field(1, ge=1, le=256, description="Engine runs at once (global limit across workers).")


class RunnerConfig(StrictModel):
    """Prefect task runner."""

    task_runner: Literal["threads", "dask"] = Field("threads", description="'threads' or 'dask' (prefect-dask).")
    dask_address: str | None = Field(None, description="Scheduler address of an existing Dask cluster.")
    dask_workers: int = Field(2, ge=1, le=1024, description="Workers of a temporary local Dask cluster.")


class MonitorConfig(StrictModel):
    """Scheduled pickup of new acquisitions."""

    cron: str = Field("0 6 * * *", description="Schedule of the monitor deployment (cron, UTC); default daily.")
    lookback_days: int = Field(
        30,
        ge=0,
        le=3650,
        description=(
            "Search from the cube's latest acquisition minus this many days, so late-arriving scenes and pairs "
            "deferred for a precise orbit (published ~20 days after acquisition) are picked up."
        ),
    )

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"monitor.cron {value!r} must have 5 fields (minute hour day month weekday)")
        return value


class JobConfig(StrictModel):
    """Everything one offset-cube job needs. See examples/job.yaml for a commented template."""

    name: str = Field(
        "offset-cube",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Job name (letters, digits, '-', '_', '.'); used in flow-run names.",
    )
    area: str = Field(
        description="Area of interest: WKT (lon lat, WGS84) or a GeoJSON file path.",
        examples=["POLYGON((75.0 38.2, 75.3 38.2, 75.3 38.4, 75.0 38.4, 75.0 38.2))"],
    )
    start: dt.date = Field(
        description="First acquisition date (UTC), on or after 2014-10-03.", examples=[dt.date(2022, 1, 1)]
    )
    end: dt.date | None = Field(None, description="Last acquisition date (UTC); default today.")
    track: list[Annotated[int, Field(ge=1, le=175)]] | None = Field(
        None, description="Relative orbit(s) to keep; default all tracks over the area."
    )
    direction: FlightDirection | None = Field(None, description="ASCENDING or DESCENDING; default both.")
    polarization: Polarization | None = Field(
        None, description="Default from the data: HH in polar regions (|lat| >= 60°), else VV."
    )
    swaths: list[Swath] | None = Field(None, description="IW swaths; default those covering the area.")
    search: SearchSourceField = Field(
        SearchSource("asf"), description="'asf', 'file:PATH' (ASF GeoJSON / CMR UMM export) or 'local:FOLDER'."
    )
    acquisition: AcquisitionMode | None = Field(
        None,
        description="'bursts' (download only the bursts over the area) or 'scenes' (whole SLC zips); default "
        "bursts where the search offers them (asf, a burst export), else scenes.",
    )
    max_gap_days: int | None = Field(
        None, ge=1, le=3650, description="Drop pairs further apart than this; default none (all pairs kept)."
    )
    pairing: Literal["consecutive", "network"] = Field(
        "consecutive",
        description=(
            "'consecutive': each date with the next date of its track. 'network': each date with up to "
            "`max_neighbours` later dates of its track within `max_gap_days` (needs max_gap_days), so every date "
            "is measured several times (as ITS_LIVE pairs each image with several later ones)."
        ),
    )
    max_neighbours: int = Field(
        3, ge=1, le=30, description="'network' pairing: later dates each date is paired with (1 = consecutive)."
    )
    engine: Engine = Field(Engine.BUILTIN, description="'builtin' or 'isce2'.")
    composites: list[Literal["month", "season", "year"]] = Field(
        default_factory=list,
        description=(
            "Composites to update after each insert into the cube (<out>/composites-<period>.zarr); "
            "only periods with new layers are recomputed. Default none."
        ),
    )
    max_speed_m_per_yr: float = Field(
        1000.0, gt=0, le=20_000, description="Fastest expected surface speed; sets the minimum search range."
    )
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    grid: GridConfig = Field(default_factory=GridConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    isce2: Isce2Config = Field(default_factory=Isce2Config)
    builtin: BuiltinConfig = Field(default_factory=BuiltinConfig)
    dem: Annotated[DemConfig, BeforeValidator(_dem_source)] = Field(default_factory=DemConfig)
    product: ProductConfig = Field(default_factory=ProductConfig)
    download: DownloadConfig = Field(default_factory=DownloadConfig)
    orbits: OrbitConfig = Field(default_factory=OrbitConfig)
    cleanup: CleanupConfig = Field(default_factory=CleanupConfig)
    concurrency: ConcurrencyConfig = Field(default_factory=ConcurrencyConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    _direction_upper = field_validator("direction", "polarization", mode="before")(_upper)
    _engine_lower = field_validator("engine", "acquisition", mode="before")(_lower)

    @field_validator("swaths", mode="before")
    @classmethod
    def _swaths_upper(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if isinstance(value, list):
            return [v.upper() if isinstance(v, str) else f"IW{v}" if isinstance(v, int) else v for v in value]
        return value

    @field_validator("track", mode="before")
    @classmethod
    def _track_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("area")
    @classmethod
    def _area(cls, value: str, info: ValidationInfo) -> str:
        # Normalise to repaired WKT so the job is self-contained wherever the flow runs.
        in_folder = _resolve(Path(value.strip()), info) if (info.context or {}).get("base") else None
        return area_to_wkt(parse_area(str(in_folder) if in_folder is not None and in_folder.is_file() else value))

    @field_validator("start")
    @classmethod
    def _start_in_mission(cls, value: dt.date) -> dt.date:
        today = utc_today()
        if value < S1_FIRST_DATA:
            raise ValueError(f"start {value} is before Sentinel-1's first data ({S1_FIRST_DATA})")
        if value > today:
            raise ValueError(f"start {value} is after today ({today})")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        end = self.end_date
        if end < self.start:
            raise ValueError(f"end {end} is before start {self.start}")
        if end > utc_today():
            raise ValueError(f"end {end} is after today ({utc_today()}); leave it empty for 'today'")
        for problem in engine_parameter_problems(self.engine, self.tracking.window, self.tracking.search):
            raise ValueError(problem)
        if self.acquisition is AcquisitionMode.BURSTS and self.search.kind == "local":
            raise ValueError(
                "acquisition 'bursts' needs a burst search (search: asf or file:<ASF burst GeoJSON export>); a "
                "local: catalog holds whole SAFE products, use acquisition: scenes"
            )
        if self.engine is Engine.ISCE2 and self.tracking.mode is TrackingMode.COMPLEX:
            raise ValueError(
                "tracking.mode 'complex' cannot run with engine isce2: topsApp's dense offsets always correlate "
                "amplitudes (DenseAmpcor 'mag', components/isceobj/TopsProc/runDenseOffsets.py); use mode "
                "'amplitude' with isce2, or engine 'builtin' for complex tracking"
            )
        if self.pairing == "network" and self.max_gap_days is None:
            raise ValueError(
                "pairing 'network' needs max_gap_days (e.g. 36: pairs up to 36 days apart); "
                "without it the network would pair across every gap in the archive"
            )
        return self

    @property
    def neighbours(self) -> int:
        """How many later dates each date is paired with: 1 for consecutive pairing."""
        return self.max_neighbours if self.pairing == "network" else 1

    @property
    def end_date(self) -> dt.date:
        """The end date, `today` (UTC) when not given."""
        return self.end or utc_today()

    @property
    def dem_cache_dir(self) -> Path:
        """Where automatic DEM tiles, geoid windows and per-area mosaics are kept."""
        return self.dem.cache or self.storage.out / "dem"


def engine_parameter_problems(engine: Engine, window: Size, search: Size | None) -> list[str]:
    """Reasons why ``engine`` cannot run these window/search sizes (empty when it can).

    ISCE2's CPU DenseAmpcor needs even windows, a half search range of at least 8 (its 16-pixel zoom window must
    fit in 2*search+1) and smaller than twice the window. The built-in tracker needs even windows too (the window
    centre must fall on a pixel boundary shared by both images) and a search of at least 1 pixel.
    """
    problems: list[str] = []
    names = Size._fields
    for name, size in zip(names, window, strict=True):
        if size % 2:
            problems.append(f"tracking.window {name} must be even for the {engine.value} engine; got {size}")
    if search is not None:
        for name, size, win in zip(names, search, window, strict=True):
            if engine is Engine.ISCE2 and size < 8:
                problems.append(f"tracking.search {name} must be >= 8 for ISCE2's ampcor; got {size}")
            if engine is Engine.ISCE2 and size >= 2 * win:
                problems.append(
                    f"tracking.search {name} must be < 2 x window {name} ({2 * win}) for ISCE2's ampcor; got {size}"
                )
    return problems


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def load_job(path: Path | str | None = None, overrides: Mapping[str, Any] | None = None) -> JobConfig:
    """Build a job from a YAML file and/or overrides (dotted keys allowed: ``{"storage.out": "x"}``).

    Relative paths are relative to the file's folder, also in ``overrides`` (give those absolute: the command line
    makes its flags absolute against the current folder first).

    Every problem becomes one :class:`ConfigError` whose message names the file, the field and what is valid.
    """
    raw: dict[str, Any] = {}
    origin = "job"
    if path is not None:
        path = Path(path)
        origin = str(path)
        raw = _read_yaml(path)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        _set_dotted(raw, key, value)
    return job_from_dict(raw, origin, base=None if path is None else path.parent)


def job_from_dict(raw: Mapping[str, Any], origin: str = "job", base: Path | None = None) -> JobConfig:
    """The job from plain data; relative paths in it are relative to ``base`` (default: the current folder)."""
    context = None if base is None else {"base": base.absolute()}
    try:
        return JobConfig.model_validate(dict(raw), context=context)
    except ValidationError as err:
        raise ConfigError(f"{origin}: {format_validation_error(err)}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read job file {path}: {err.strerror or err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of job fields at the top level, got {type(data).__name__}")
    return data


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[last] = value


def format_validation_error(err: ValidationError) -> str:
    """One line per problem, joined with '; ': where, what was given, what is valid."""
    messages = []
    for item in err.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "job"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_fields(item["loc"][:-1])
            messages.append(f"unknown field '{where}'" + (f" (valid: {', '.join(allowed)})" if allowed else ""))
            continue
        if item["type"] == "missing":
            messages.append(f"field '{where}' is required")
            continue
        msg = str(item["msg"]).removeprefix("Value error, ")
        given = item.get("input")
        shown = "" if isinstance(given, dict | list) or given is None or str(given) in msg else f" (got {given!r})"
        messages.append(f"{where}: {msg}{shown}" if where != "job" else f"{msg}")
    return "; ".join(messages)


def _allowed_fields(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = JobConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)
