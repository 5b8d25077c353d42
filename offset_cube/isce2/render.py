"""Decide what topsApp gets for one pair (swaths, boxes, DEM, catalogs) and write its three XML files.

* swaths: the job's, else those whose reference annotation footprint meets the area, else all three when the
  reference SAFEs cannot be read yet (a dry run before download); ``topsApp.render.json`` records which.
* region of interest: a box that makes topsApp keep only the bursts holding the area on both dates
  (:mod:`offset_cube.isce2.bursts`, from the annotations); the area's bounding box when the SAFEs cannot be read
  yet or no box does better; the bounding box plus ``isce2.roi_margin_deg`` when the job sets a margin.
* geocode bounding box: the clip box (the area's bounding box, which the product stage clips to) plus
  ``isce2.geocode_margin_deg``; it bounds the ``.geo`` grid, which otherwise covers every burst (ISCE2
  ``TopsProc/runGeocode.py``).
* offset geocode list: the raw, SNR and covariance offsets and topsApp's filtered offsets, as absolute paths;
  with ``use GPU`` also ``dense_offsets.bip``, which topsApp's default list forgets (``applications/topsApp.py``;
  ``runGeocode.py`` skips missing files).
The area is assumed not to cross the antimeridian.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shapely.geometry.base import BaseGeometry

from offset_cube.area import parse_area
from offset_cube.atomic import write_text_atomic
from offset_cube.config import JobConfig
from offset_cube.dem import job_dem
from offset_cube.errors import EngineError, OrbitError, SafeError
from offset_cube.geometry.acquisition import open_date
from offset_cube.isce2.bursts import BurstChoice, choose_region
from offset_cube.isce2.dem import check_dem_covers, check_srtm_reach, prepare_dem
from offset_cube.isce2.reader import COVARIANCE, FILTERED, OFFSETS, OFFSETS_GPU, SNR
from offset_cube.isce2.topsapp import MERGED_DIR
from offset_cube.isce2.xml import (
    CATALOG_OUTPUT,
    REFERENCE_XML,
    SECONDARY_XML,
    TOPSAPP_XML,
    Box,
    CatalogSettings,
    TopsAppSettings,
    reference_xml,
    secondary_xml,
    topsapp_xml,
)
from offset_cube.planning import Pair, Plan, choose_polarization
from offset_cube.safe.product import SafeProduct
from offset_cube.size import Size
from offset_cube.stages import OrbitFile, PairInputs

log = logging.getLogger(__name__)

RENDER_RECORD = "topsApp.render.json"
IW_SWATHS = (1, 2, 3)
SwathSource = Literal["job", "annotation", "all"]


@dataclass(frozen=True)
class RenderedPair:
    """What was rendered for a pair, besides the XML itself (read back by the engine)."""

    pair_id: str
    swaths: tuple[int, ...]
    swaths_source: SwathSource
    polarization: str
    use_gpu: bool
    filtered: bool
    bursts: dict[str, list[int]] = field(default_factory=dict)  # swath -> reference bursts topsApp keeps (1-based)

    @property
    def expected_swaths(self) -> tuple[int, ...]:
        """Swaths that must extract: all listed ones unless they were a guess ('all')."""
        return () if self.swaths_source == "all" else self.swaths


def render_pair_inputs(inputs: PairInputs, job: JobConfig) -> Path:
    """Write topsApp.xml, reference.xml and secondary.xml for a pair whose inputs are on disk; the pair folder."""
    ref_orbits = orbit_directory(inputs.reference_orbits, "reference")
    sec_orbits = orbit_directory(inputs.secondary_orbits, "secondary")
    dem, geocode_dem = job_dems(job)
    ref, sec = inputs.reference_safes, inputs.secondary_safes
    orbit_files = (inputs.reference_orbits, inputs.secondary_orbits)
    return write_pair_files(
        inputs.pair, inputs.pair_dir, ref, sec, ref_orbits, sec_orbits, job, dem, geocode_dem, orbit_files
    )


def render_dry_run(job: JobConfig, plan: Plan) -> list[Path]:
    """Render every planned pair with the paths its inputs will have (scene cache or local catalog); no download."""
    dem, geocode_dem = job_dems(job)
    folders = []
    for pair in plan.pairs:
        ref = tuple(s.local_path or job.storage.scene_dir / s.file_name for s in pair.reference.scenes)
        sec = tuple(s.local_path or job.storage.scene_dir / s.file_name for s in pair.secondary.scenes)
        pair_dir = job.storage.pairs_dir / pair.pair_id
        orbits = job.storage.orbit_dir
        folders.append(write_pair_files(pair, pair_dir, ref, sec, orbits, orbits, job, dem, geocode_dem))
    return folders


def write_pair_files(
    pair: Pair,
    pair_dir: Path,
    reference_safes: Sequence[Path],
    secondary_safes: Sequence[Path],
    reference_orbits: Path | None,
    secondary_orbits: Path | None,
    job: JobConfig,
    dem: Path | None,
    geocode_dem: Path | None,
    orbit_files: tuple[Sequence[OrbitFile], Sequence[OrbitFile]] = ((), ()),
) -> Path:
    """Decide the settings and write the three XML files and the render record into ``pair_dir``.

    ``orbit_files`` (reference, secondary) give the orbits the burst boxes are computed with; without them, the
    annotations' state vectors (metres apart, far below what the region's clearance allows for)."""
    area = parse_area(job.area)
    polarization = pair_polarization(job, pair)
    swaths, source = choose_swaths(job, area, reference_safes, polarization)
    dates = ((reference_safes, orbit_files[0]), (secondary_safes, orbit_files[1]))
    region, bursts = region_of_interest(job, pair, area, dates, polarization, swaths)
    pair_dir = pair_dir.absolute()
    settings = TopsAppSettings(
        reference=_catalog("reference", reference_safes, reference_orbits, pair_dir, polarization),
        secondary=_catalog("secondary", secondary_safes, secondary_orbits, pair_dir, polarization),
        reference_catalog=pair_dir / REFERENCE_XML,
        secondary_catalog=pair_dir / SECONDARY_XML,
        swaths=swaths,
        region_of_interest=region,
        geocode_bounding_box=padded_box(area, job.isce2.geocode_margin_deg),
        dem=dem,
        geocode_dem=geocode_dem,
        window=Size(*job.tracking.window),  # Size(*...) also where a model copy skipped validation
        search=Size(*pair.search_px),
        skip=Size(*job.tracking.skip),
        oversampling=job.tracking.oversampling,
        snr_threshold_factor=job.isce2.snr_threshold_factor,
        use_gpu=job.isce2.use_gpu,
        offset_geocode_list=offset_geocode_list(pair_dir, job.isce2.use_gpu),
    )
    note = f"offset-cube {pair.label} (Δt {pair.dt_days:.1f} d): swaths {list(swaths)} from {_SOURCE_TEXT[source]}"
    if bursts is not None:
        note += f"; {bursts.describe()}, the region of interest chosen for that (ISCE's burst boxes)"
    pair_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(pair_dir / REFERENCE_XML, reference_xml(settings.reference, note))
    write_text_atomic(pair_dir / SECONDARY_XML, secondary_xml(settings.secondary, note))
    write_text_atomic(pair_dir / TOPSAPP_XML, topsapp_xml(settings, note))
    record = RenderedPair(
        pair_id=pair.pair_id,
        swaths=swaths,
        swaths_source=source,
        polarization=polarization,
        use_gpu=job.isce2.use_gpu,
        filtered=job.isce2.snr_threshold_factor is not None,
        bursts=bursts.kept if bursts is not None else {},
    )
    write_text_atomic(pair_dir / RENDER_RECORD, json.dumps(record.__dict__, indent=2) + "\n")
    return pair_dir


def _catalog(
    role: Literal["reference", "secondary"], safes: Sequence[Path], orbits: Path | None, pair_dir: Path, pol: str
) -> CatalogSettings:
    return CatalogSettings(role, tuple(p.absolute() for p in safes), orbits, pair_dir / CATALOG_OUTPUT[role], pol)


_SOURCE_TEXT: dict[SwathSource, str] = {
    "job": "the job's swaths",
    "annotation": "the reference annotation footprints that meet the area",
    "all": "no readable reference annotation yet (all three; topsApp skips those outside the ROI)",
}


def read_render_record(pair_dir: Path) -> RenderedPair:
    """The record :func:`write_pair_files` left; :class:`EngineError` when the render stage has not run."""
    path = pair_dir / RENDER_RECORD
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return RenderedPair(
            pair_id=str(data["pair_id"]),
            swaths=tuple(int(s) for s in data["swaths"]),
            swaths_source=data["swaths_source"],
            polarization=str(data["polarization"]),
            use_gpu=bool(data["use_gpu"]),
            filtered=bool(data["filtered"]),
            bursts={str(k): [int(n) for n in v] for k, v in data.get("bursts", {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EngineError(f"{path} is missing or unreadable ({err}); the render stage must run first") from err


def pair_polarization(job: JobConfig, pair: Pair) -> str:
    """The pair's co-polarisation in lower case (the plan kept only scenes holding the chosen one)."""
    chosen = choose_polarization(job, pair.scenes)
    if chosen is None:
        raise EngineError(f"{pair.label}: no polarisation can be chosen for its scenes")
    return chosen.value.lower()


def choose_swaths(
    job: JobConfig, area: BaseGeometry, reference_safes: Sequence[Path], polarization: str
) -> tuple[tuple[int, ...], SwathSource]:
    """The job's swaths, else those the reference footprints show over the area, else all three."""
    if job.swaths:
        return tuple(sorted(int(s.value[2]) for s in job.swaths)), "job"
    if reference_safes and all(p.exists() for p in reference_safes):
        try:
            swaths = swaths_covering(reference_safes, area, polarization)
        except SafeError as err:
            log.warning("reference annotation unreadable (%s); listing all swaths", err)
            return IW_SWATHS, "all"
        if not swaths:
            raise EngineError(
                f"no {polarization.upper()} swath of {', '.join(p.name for p in reference_safes)} covers the area"
            )
        return swaths, "annotation"
    return IW_SWATHS, "all"


def region_of_interest(
    job: JobConfig,
    pair: Pair,
    area: BaseGeometry,
    dates: tuple[tuple[Sequence[Path], Sequence[OrbitFile]], ...],
    polarization: str,
    swaths: tuple[int, ...],
) -> tuple[Box, BurstChoice | None]:
    """topsApp's region of interest, and the bursts it keeps when it was chosen from the annotations."""
    margin = job.isce2.roi_margin_deg
    bbox = padded_box(area, margin or 0.0)
    if margin is not None or not all(p.exists() for safes, _ in dates for p in safes):
        return bbox, None  # the job's margin, or a dry run before download: the area's bounding box
    try:
        with contextlib.ExitStack() as stack:
            opened = [stack.enter_context(open_date(safes, orbits, polarization)) for safes, orbits in dates]
            choice = choose_region(opened, area, polarization, [f"IW{n}" for n in swaths], bbox)
    except (SafeError, OrbitError, EngineError) as err:
        log.warning("%s: burst boxes not computed (%s); region of interest = the area's bounding box", pair.label, err)
        return bbox, None
    log.info("%s: %s", pair.label, choice.describe())
    return choice.region, choice


def swaths_covering(safes: Sequence[Path], area: BaseGeometry, polarization: str) -> tuple[int, ...]:
    """IW swath numbers whose annotation footprint, in any of the slices ``safes``, meets ``area``."""
    found: set[int] = set()
    for path in safes:
        with SafeProduct(path) as product:
            for swath in product.swaths(polarization):
                if product.annotation(swath, polarization).footprint.intersects(area):
                    found.add(int(swath.removeprefix("IW")))
    return tuple(sorted(found))


def padded_box(area: BaseGeometry, margin_deg: float) -> Box:
    """The area's bounding box grown by ``margin_deg`` on every side, as (south, north, west, east)."""
    west, south, east, north = area.bounds
    return (
        max(south - margin_deg, -90.0),
        min(north + margin_deg, 90.0),
        west - margin_deg,
        east + margin_deg,
    )


def offset_geocode_list(pair_dir: Path, use_gpu: bool) -> tuple[Path, ...]:
    merged = pair_dir / MERGED_DIR
    names = [OFFSETS, SNR, COVARIANCE, FILTERED] + ([OFFSETS_GPU] if use_gpu else [])
    return tuple(merged / name for name in names)


def orbit_directory(orbits: Sequence[OrbitFile], role: str) -> Path | None:
    """The folder topsApp searches for one date's orbit (None: the annotation's state vectors)."""
    folders = {o.path.parent.absolute() for o in orbits if o.path is not None}
    if not folders:
        return None
    if len(folders) > 1:
        raise EngineError(
            f"the {role} date's orbit files lie in several folders ({', '.join(map(str, sorted(folders)))}); "
            "topsApp searches one orbit directory per date"
        )
    return folders.pop()


def job_dems(job: JobConfig) -> tuple[Path | None, Path | None]:
    """The job's DEM and geocode DEM as ISCE rasters covering the ROI / geocode box (converted if GeoTIFF).

    ``dem: auto`` fetches (first call) or reuses the cached GLO-30 mosaic and converts it once; ``dem: none``
    leaves topsApp to download SRTM itself, which only reaches 56°S-60°N.
    """
    area = parse_area(job.area)
    cache = job.dem_cache_dir
    roi = padded_box(area, job.isce2.roi_margin_deg or 0.0)
    source = job_dem(job)
    if source is None:
        check_srtm_reach(roi)
        dem = None
    else:
        dem = prepare_dem(source, cache, ellipsoidal=job.dem.source == "auto")
        check_dem_covers(dem, roi, "region of interest (area + isce2.roi_margin_deg)")
    geocode_dem = None
    if job.isce2.geocode_dem is not None:
        geocode_dem = prepare_dem(job.isce2.geocode_dem, cache)
        check_dem_covers(geocode_dem, padded_box(area, job.isce2.geocode_margin_deg), "geocode bounding box")
    return dem, geocode_dem
