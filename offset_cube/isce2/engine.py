"""The ISCE2 engine for one pair: check the render, run topsApp (resuming when possible), judge, read, write."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

from offset_cube.config import JobConfig
from offset_cube.dem import describe_dem
from offset_cube.errors import EngineError, OrbitError, SafeError
from offset_cube.geometry.acquisition import LookGeometry, date_look_geometry, open_date
from offset_cube.isce2.dem import dem_heights, dem_slopes
from offset_cube.isce2.discovery import IsceInstallation, discover_isce
from offset_cube.isce2.judge import judge_run
from offset_cube.isce2.reader import (
    COVARIANCE,
    FILTERED,
    GEO,
    OFFSETS,
    OFFSETS_GPU,
    SNR,
    GeometryAt,
    geocoded_dataset,
    offset_files,
)
from offset_cube.isce2.render import RenderedPair, job_dems, read_render_record
from offset_cube.isce2.supervise import run_topsapp
from offset_cube.isce2.topsapp import LOG_FILE, MERGED_DIR, STATE_FILE, LineCallback, StepCallback, TopsAppError
from offset_cube.isce2.workdir import (
    clean_workdir,
    forget_progress,
    inputs_fingerprint,
    plan_resume,
    read_state,
    remember_notable,
    remove_path,
    write_state,
)
from offset_cube.result import RESULT_NAME, pair_record, result_attrs, worse_orbit_type, write_pair_result
from offset_cube.stages import PairInputs

log = logging.getLogger(__name__)

#: Grace between SIGTERM and SIGKILL when topsApp's group is stopped.
KILL_GRACE_S = 10.0


def run_isce2(
    inputs: PairInputs,
    job: JobConfig,
    on_line: LineCallback | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Dense offsets for one pair with topsApp.py; return the path of the pair's ``offsets.zarr``.

    ``on_line`` receives every output line, ``on_step(index, name)`` every step start (index into
    :data:`~offset_cube.isce2.topsapp.TOPSAPP_STEPS`); ``should_stop()`` returning True stops topsApp (the run is
    being cancelled). Raises :class:`~offset_cube.errors.EngineError` (or its
    :class:`~offset_cube.isce2.topsapp.TopsAppTimeout`) with the log lines that explain a failure.
    """
    pair_dir = inputs.pair_dir
    rendered = read_render_record(pair_dir)
    if rendered.pair_id != inputs.pair.pair_id:
        raise EngineError(f"{pair_dir} was rendered for pair {rendered.pair_id}, not {inputs.pair.pair_id}")
    install = discover_isce(job.isce2)
    log.info("%s: %s", inputs.pair.label, install.describe())
    fingerprint = inputs_fingerprint(pair_dir, install)
    if cleaned_after_success(pair_dir, fingerprint, rendered):
        # topsApp finished with these inputs and its working files were cleaned: read its kept offsets again
        log.info("%s: topsApp finished earlier with the same inputs; reading its kept offsets", inputs.pair.label)
    else:
        run_and_judge(inputs, job, install, rendered, fingerprint, on_line, on_step, should_stop)
    result = write_pair_result(read_result(inputs, job, install, rendered), pair_dir)
    if job.cleanup.pair_files == "minimal":
        keep_minimal(pair_dir)
    return result


def run_and_judge(
    inputs: PairInputs,
    job: JobConfig,
    install: IsceInstallation,
    rendered: RenderedPair,
    fingerprint: str,
    on_line: LineCallback | None,
    on_step: StepCallback | None,
    should_stop: Callable[[], bool] | None,
) -> None:
    """Run topsApp (resuming when possible) and raise :class:`TopsAppError` unless its outputs are usable."""
    pair_dir = inputs.pair_dir
    resume = plan_resume(pair_dir, fingerprint)
    log.info("%s: %s", inputs.pair.label, resume.reason)
    record = None
    if resume.start_step is not None:
        record = run_topsapp(
            install,
            pair_dir,
            deadline_s=job.isce2.deadline_hours * 3600,
            omp_num_threads=job.isce2.omp_num_threads,
            start_step=resume.start_step,
            on_line=on_line,
            on_step=on_step,
            should_stop=should_stop,
            grace_s=KILL_GRACE_S,
        )
        notable = remember_notable(pair_dir, record)
    else:
        notable = list(read_state(pair_dir).get("notable", []))
    try:
        judge_run(
            pair_dir,
            record,
            notable,
            expected_swaths=rendered.expected_swaths,
            listed_swaths=rendered.swaths,
            required=required_outputs(rendered),
        )
    except TopsAppError as err:
        if record is None or record.returncode == 0:
            forget_progress(pair_dir)  # every step "completed" yet the run is unusable: next attempt starts clean
        raise TopsAppError(f"{inputs.pair.label}: {err}") from None


def required_outputs(rendered: RenderedPair) -> list[tuple[str, ...]]:
    """Files a successful run leaves in ``merged/`` (alternatives per entry: CPU .bil or GPU .bip)."""
    merged = MERGED_DIR
    outputs = [
        (f"{merged}/{OFFSETS}", f"{merged}/{OFFSETS_GPU}"),
        (f"{merged}/{OFFSETS}{GEO}", f"{merged}/{OFFSETS_GPU}{GEO}"),
        (f"{merged}/{SNR}{GEO}",),
    ]
    if rendered.filtered:
        outputs.append((f"{merged}/{FILTERED}{GEO}",))
    return outputs


def read_result(inputs: PairInputs, job: JobConfig, install: IsceInstallation, rendered: RenderedPair) -> xr.Dataset:
    """The common per-pair result from ``merged/*.geo`` and the reference date's look geometry."""
    files = offset_files(inputs.pair_dir / MERGED_DIR, filtered=rendered.filtered)
    pair = inputs.pair
    parameters = {
        "isce_version": install.version,
        "dem": describe_dem(job),
        "topsapp": str(install.topsapp),
        "offsets_file": f"{MERGED_DIR}/{files.offsets.name}",
        "covariance": files.covariance is not None,
        "window": list(job.tracking.window),
        "search": list(pair.search_px),
        "skip": list(job.tracking.skip),
        # topsApp always correlates amplitudes: DenseAmpcor 'mag' on the CPU (TopsProc/runDenseOffsets.py), and
        # PyCuAmpcor takes amplitudes too; the job cannot ask for 'complex' with isce2 (config check).
        "mode": "amplitude",
        # `Ampcor oversampling factor` as rendered (the correlation-surface oversampling of both code paths)
        "oversampling": job.tracking.oversampling,
        "snr_threshold_factor": job.isce2.snr_threshold_factor,
        "use_gpu": job.isce2.use_gpu,
        "gpu_output": files.gpu,
        "swaths": list(rendered.swaths),
        "bursts": rendered.bursts,  # swath -> reference bursts topsApp kept (1-based), when the render chose them
        "grid_origin": "coordinate startingValue = first sample centre",
        "geometry": "zero-Doppler look geometry from the reference orbit at the geocode DEM heights",
        "offsets_relative_to": "topsApp geometric coregistration (DEM + orbits)",
    }
    record = pair_record(
        pair,
        engine="isce2",
        orbit_type=worse_orbit_type(*inputs.orbit_types) if inputs.orbit_types else "annotation",
        polarization=rendered.polarization.upper(),
        processing_parameters=parameters,
    )
    attrs = result_attrs(record, grid="geographic")
    return geocoded_dataset(files, geocoded_geometry(reference_geometry(inputs, rendered), job), attrs)


def reference_geometry(inputs: PairInputs, rendered: RenderedPair) -> LookGeometry:
    """The reference date's look geometry over the processed swaths: its orbit (the orbit file, else the
    annotations' state vectors, as the built-in engine) and the swaths' sampling."""
    swaths = [f"IW{n}" for n in rendered.swaths]
    try:
        with open_date(inputs.reference_safes, inputs.reference_orbits, rendered.polarization) as ref:
            return date_look_geometry(ref, rendered.polarization, swaths)
    except (SafeError, OrbitError) as err:
        raise EngineError(f"{inputs.pair.label}: incidence and heading cannot be derived: {err}") from err


def geocoded_geometry(looks: LookGeometry, job: JobConfig) -> GeometryAt:
    """The look geometry at geocoded points on the ground topsApp geocoded them onto: the geocode DEM's (else
    the DEM's) heights; 0 m above the ellipsoid when topsApp fetched SRTM itself (no DEM in the job)."""
    dem, geocode_dem = job_dems(job)
    heights_from = geocode_dem or dem

    def at(latitude: np.ndarray, longitude: np.ndarray) -> dict[str, np.ndarray]:
        if heights_from is None:
            return looks.at(latitude, longitude, 0.0)
        geometry = looks.at(latitude, longitude, dem_heights(heights_from, latitude, longitude))
        geometry["slope_east"], geometry["slope_north"] = dem_slopes(heights_from, latitude, longitude)
        return geometry

    return at


def keep_minimal(pair_dir: Path) -> None:
    """Cleanup policy 'minimal': keep what a rerun and a user need. The XML inputs, the render record, the log,
    ISCE's geocoded offset rasters (``merged/*.geo`` with their headers, small) and offsets.zarr stay; topsApp's
    working files (merged SLCs, geom_reference, fine_*, PICKLE: gigabytes) go. The state keeps the inputs'
    fingerprint, marked cleaned, so a rerun with the same inputs reads the kept offsets instead of running again."""
    merged = pair_dir / MERGED_DIR
    if merged.is_dir():
        for entry in merged.iterdir():
            if entry.name not in KEPT_MERGED:
                remove_path(entry)
    clean_workdir(pair_dir, keep_result=True, keep=(MERGED_DIR, STATE_FILE))
    state = read_state(pair_dir)
    state["cleaned"] = True
    write_state(pair_dir, state)
    log.debug("cleaned %s; kept %s, %s, merged/*.geo and the XML inputs", pair_dir, RESULT_NAME, LOG_FILE)


def cleaned_after_success(pair_dir: Path, fingerprint: str, rendered: RenderedPair) -> bool:
    """True when a run with these inputs succeeded and was cleaned, and the geocoded offsets it kept are whole."""
    state = read_state(pair_dir)
    if not (state.get("cleaned") and state.get("fingerprint") == fingerprint):
        return False
    needed = [o for o in required_outputs(rendered) if all(name.endswith(GEO) for name in o)]
    return all(any(_whole_raster(pair_dir / name) for name in options) for options in needed)


def _whole_raster(path: Path) -> bool:
    header = path.with_name(path.name + ".xml")
    return path.is_file() and path.stat().st_size > 0 and header.is_file()


#: What 'minimal' keeps in merged/: the geocoded offset rasters with their ISCE header and GDAL VRT.
KEPT_MERGED = frozenset(
    f"{name}{GEO}{extension}"
    for name in (OFFSETS, OFFSETS_GPU, SNR, COVARIANCE, FILTERED)
    for extension in ("", ".xml", ".vrt")
)
