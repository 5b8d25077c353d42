"""Copernicus DEM GLO-30 for an area: tiles fetched, mosaicked, converted to WGS84 ellipsoid heights, cached.

Which tiles exist, and their names, come from dem-stitcher's GLO-30 tile index (the list HyP3 uses): a 1° tile
``Copernicus_DSM_COG_10_N38_00_E072_00_DEM`` lives at ``<tiles_url>/<name>/<name>.tif`` (a cloud-optimised
GeoTIFF of EGM2008 heights, pixel-is-point, 1″ in latitude). Tiles the index does not list are ocean: there the
height is 0 above the geoid. dem-stitcher merges the tiles within the box (``merge_tile_datasets_within_extent``)
and adds the EGM2008 geoid (``remove_geoid``, cubic on the DEM's own grid, as ``stitch_dem`` does).

What we do ourselves, and why: dem-stitcher reads tiles from URLs baked into its index and the geoid from a fixed
bucket, retries inside ``requests``/GDAL without telling which tile failed, and keeps nothing between runs. Here
the tile and geoid sources are settings (a mirror, or a local folder laid out like the bucket for offline runs),
each tile is downloaded whole once into a tile cache (reused by neighbouring areas), a transient failure is
retried with backoff and a final failure names the tile, and the finished mosaic is cached per box.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from offset_cube.atomic import atomic_path, read_json, write_text_atomic
from offset_cube.errors import DemError
from offset_cube.quiet import quiet_warnings

log = logging.getLogger(__name__)

#: Bump when the mosaic's content or format changes, so older cached mosaics are rebuilt.
MOSAIC_VERSION = "1"
#: Box corners are snapped outward to this grid (degrees, 30″), so near-identical areas share a mosaic.
SNAP_DEG = 1.0 / 120.0
#: GLO-30 posting in latitude (1″); in longitude it widens towards the poles (Copernicus DEM product handbook,
#: GEO.2018.1988.1 §2.2): 1″ below 50°, 1.5″ to 60°, 2″ to 70°, 3″ to 80°, 5″ to 85°, 10″ beyond.
LAT_STEP_DEG = 1.0 / 3600.0
LON_STEP_ARCSEC = ((50.0, 1.0), (60.0, 1.5), (70.0, 2.0), (80.0, 3.0), (85.0, 5.0), (90.0, 10.0))
#: Geoid pixels read beyond the box so the cubic interpolation at its edges has its whole kernel.
GEOID_BUFFER_PX = 3
_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Box:
    """A latitude/longitude box in degrees (WGS84)."""

    west: float
    south: float
    east: float
    north: float

    def as_list(self) -> list[float]:
        """[xmin, ymin, xmax, ymax], the order dem-stitcher takes."""
        return [self.west, self.south, self.east, self.north]

    @property
    def all_longitudes(self) -> bool:
        """The box goes all the way round (it reaches a pole, or its margin wraps the globe)."""
        return self.east - self.west >= 360.0

    @property
    def crosses_antimeridian(self) -> bool:
        """A :meth:`normalised` box that runs east past 180° (e.g. 179.5..180.5)."""
        return self.east > 180.0 and not self.all_longitudes

    def normalised(self) -> Box:
        """The same ground in the one form the mosaic takes: a box that reaches a pole or spans 360° of longitude
        becomes every longitude, -180..180 (a polar cap); one that crosses the antimeridian becomes one continuous
        span starting in [-180, 180) and running east past 180 (as dem-stitcher represents a dateline crossing)."""
        south, north = max(self.south, -90.0), min(self.north, 90.0)
        if south <= -90.0 or north >= 90.0 or self.east - self.west >= 360.0:
            return Box(-180.0, south, 180.0, north)
        shift = 360.0 * math.floor((self.west + 180.0) / 360.0)
        return Box(self.west - shift, south, self.east - shift, north)

    def snapped(self, step: float = SNAP_DEG) -> Box:
        return Box(
            math.floor(self.west / step + 1e-9) * step,
            max(math.floor(self.south / step + 1e-9) * step, -90.0),
            math.ceil(self.east / step - 1e-9) * step,
            min(math.ceil(self.north / step - 1e-9) * step, 90.0),
        )

    def describe(self) -> str:
        return f"W {self.west:.4f} S {self.south:.4f} E {self.east:.4f} N {self.north:.4f}"


@dataclass(frozen=True)
class Tile:
    """One GLO-30 tile: its id and its path relative to the tile source (as in the public bucket)."""

    tile_id: str
    relative_path: str


@dataclass(frozen=True)
class Source:
    """Where tiles and the geoid come from, and how hard to try."""

    tiles_url: str
    geoid_url: str
    retries: int = 3
    retry_delay_s: float = 5.0
    timeout_s: float = 120.0

    def tile_location(self, tile: Tile) -> str:
        return f"{self.tiles_url.rstrip('/')}/{tile.relative_path}"


def glo30_tiles(box: Box) -> list[Tile]:
    """The GLO-30 tiles the index lists over ``box`` (land tiles; ocean has none), sorted by id."""
    from dem_stitcher.datasets import get_overlapping_dem_tiles

    # Across the antimeridian it warns that it looks on the other side: wanted.
    with quiet_warnings(UserWarning, message="Getting tiles across dateline"):
        frame = get_overlapping_dem_tiles(box.as_list(), "glo_30")
    tiles = [
        Tile(str(tile_id), urlsplit(str(url)).path.lstrip("/"))
        for tile_id, url in zip(frame["tile_id"], frame["url"], strict=True)
    ]
    return sorted(tiles, key=lambda t: t.tile_id)


def lon_step_deg(latitude: float) -> float:
    """GLO-30's longitude posting (degrees) at ``latitude``."""
    for limit, arcsec in LON_STEP_ARCSEC:
        if abs(latitude) < limit:
            return arcsec / 3600.0
    return LON_STEP_ARCSEC[-1][1] / 3600.0


def mosaic(box: Box, source: Source, cache_dir: Path) -> Path:
    """The ellipsoidal-height GeoTIFF (EPSG:4326) over ``box``: from the cache, else fetched and built once.

    Safe to call from several threads or processes at once: one builds it under a file lock, the others wait
    and reuse it. A rerun over the same box fetches nothing.
    """
    box = box.normalised().snapped()
    identity = {
        "version": MOSAIC_VERSION,
        "box": box.as_list(),
        "tiles_url": source.tiles_url,
        "geoid_url": source.geoid_url,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_dir / f"glo30_{_box_name(box)}_{key}.tif"
    stamp = target.with_name(target.name + ".json")
    with _locked(cache_dir / ".locks" / f"{target.name}.lock"):
        if target.is_file() and read_json(stamp) == identity:
            log.info("DEM %s reused from the cache", target.name)
            return target
        tiles = glo30_tiles(box)
        log.info("DEM for %s: %d GLO-30 tile(s) from %s", box.describe(), len(tiles), source.tiles_url)
        paths = [fetch_tile(tile, source, cache_dir / "tiles") for tile in tiles]
        geoid = fetch_geoid(box, source, cache_dir / "geoid" / f"egm2008_{_box_name(box)}_{key}.tif")
        heights, profile = _ellipsoidal_mosaic(box, paths, geoid)
        write_heights(target, heights, profile["transform"])
        write_text_atomic(stamp, json.dumps(identity, indent=2) + "\n")
    log.info("DEM %s written (%d x %d samples)", target, heights.shape[1], heights.shape[0])
    return target


# ------------------------------------------------------------------------------------------------ fetching


def fetch_tile(tile: Tile, source: Source, tile_dir: Path) -> Path:
    """The tile on disk: a local source is read in place; an HTTP one is downloaded once into ``tile_dir``."""
    location = source.tile_location(tile)
    local = _local_path(location)
    if local is not None:
        if not local.is_file():
            raise DemError(f"DEM tile {tile.tile_id} is missing from the local tile source ({local})")
        return local
    target = tile_dir / tile.relative_path
    if target.is_file():
        return target
    _retrying(f"DEM tile {tile.tile_id} ({location})", source, lambda: _download(location, target, source))
    return target


def fetch_geoid(box: Box, source: Source, target: Path) -> Path:
    """The geoid over ``box`` (plus a few samples) as a small local GeoTIFF, read by window from the source."""
    if target.is_file():
        return target
    location = source.geoid_url
    local = _local_path(location)
    path = str(local) if local is not None else location

    def read() -> None:
        data, profile = _read_geoid_window(path, box)
        write_heights(target, data, profile["transform"], profile["crs"])

    if local is not None and not local.is_file():
        raise DemError(f"the geoid grid {local} does not exist (dem.geoid_url)")
    _retrying(f"the EGM2008 geoid grid ({location})", source, read)
    return target


class _Transient(Exception):
    """A failure that a retry may fix."""


def _retrying(what: str, source: Source, action: Any) -> None:
    """Run ``action``; retry transient failures with doubling delays; then one :class:`DemError` naming ``what``."""
    delay = source.retry_delay_s
    for attempt in range(source.retries + 1):
        try:
            action()
            return
        except _Transient as err:
            if attempt == source.retries:
                raise DemError(f"could not fetch {what} after {attempt + 1} attempt(s): {err}") from err
            log.warning(
                "fetching %s failed (%s); retry %d of %d in %.0f s", what, err, attempt + 1, source.retries, delay
            )
            time.sleep(delay)
            delay *= 2


def _download(url: str, target: Path, source: Source) -> None:
    import requests

    try:
        with requests.get(url, stream=True, timeout=source.timeout_s) as response:
            if response.status_code in _TRANSIENT_HTTP:
                raise _Transient(f"HTTP {response.status_code}")
            if response.status_code != 200:
                raise DemError(f"{url} answered HTTP {response.status_code}; the tile source does not hold it")
            expected = response.headers.get("Content-Length")
            with atomic_path(target) as tmp:
                with tmp.open("wb") as out:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        out.write(chunk)
                size = tmp.stat().st_size
                if expected is not None and size != int(expected):
                    raise _Transient(f"transfer cut at {size} of {expected} bytes")
                _check_raster(tmp, url)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
        raise _Transient(f"{type(err).__name__}: {err}") from err


def _check_raster(path: Path, url: str) -> None:
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as dataset:
            dataset.read(1, window=((0, 1), (0, 1)))
    except RasterioIOError as err:
        raise _Transient(f"{url} is not a readable GeoTIFF ({err})") from err


def _read_geoid_window(path: str, box: Box) -> tuple[np.ndarray, dict[str, Any]]:
    """The geoid over ``box`` plus :data:`GEOID_BUFFER_PX` samples, in the box's longitude frame: a box past
    ±180° (or all the way round) takes its columns round a global grid; beyond a pole the polar row is repeated,
    so the cubic interpolation has its whole kernel everywhere."""
    import rasterio
    from affine import Affine
    from rasterio.errors import RasterioIOError
    from rasterio.windows import Window

    options = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_HTTP_TIMEOUT": "120",
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff",
    }
    try:
        with rasterio.Env(**options), rasterio.open(path) as dataset:
            t = dataset.transform
            dx, dy = float(t.a), float(-t.e)
            col0 = math.floor((box.west - t.c) / dx) - GEOID_BUFFER_PX
            col1 = math.ceil((box.east - t.c) / dx) + GEOID_BUFFER_PX
            row0 = math.floor((t.f - box.north) / dy) - GEOID_BUFFER_PX
            row1 = math.ceil((t.f - box.south) / dy) + GEOID_BUFFER_PX
            r0, r1 = max(row0, 0), min(row1, dataset.height)
            period = round(360.0 / dx)
            is_global = dataset.width >= period and abs(period * dx - 360.0) < 1e-6
            if (col0 < 0 or col1 > dataset.width) and is_global:
                strip = dataset.read(1, window=Window(0, r0, period, max(r1 - r0, 0)))
                data = strip[:, np.arange(col0, col1) % period]
            else:
                col0, col1 = max(col0, 0), min(col1, dataset.width)
                data = dataset.read(1, window=Window(col0, r0, max(col1 - col0, 0), max(r1 - r0, 0)))
            if data.size == 0:
                raise DemError(f"the geoid grid {path} does not cover {box.describe()}")
            # Beyond a pole the grid has no rows: the polar row stands in (the geoid is one value at the pole).
            at_north = abs(t.f - 90.0) < dy and row0 < 0
            at_south = abs(t.f - dy * dataset.height + 90.0) < dy and row1 > dataset.height
            pad = (r0 - row0 if at_north else 0, row1 - r1 if at_south else 0)
            data = np.pad(data.astype(np.float32), (pad, (0, 0)), mode="edge")
            profile = {"crs": dataset.crs, "transform": t @ Affine.translation(col0, r0 - pad[0])}
    except RasterioIOError as err:
        raise _Transient(str(err)) from err
    return data, profile


def _local_path(location: str) -> Path | None:
    """The file a ``file://`` location names (None for http(s))."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return None


# -------------------------------------------------------------------------------------------------- mosaic


def _ellipsoidal_mosaic(box: Box, tiles: Sequence[Path], geoid: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Tiles merged over the whole box (ocean = 0 m above the geoid), plus the geoid: WGS84 ellipsoid heights."""
    import rasterio
    from dem_stitcher.merge import merge_tile_datasets_within_extent
    from rasterio.warp import Resampling, reproject

    profile = _box_grid(box, tiles)
    heights = np.full((profile["height"], profile["width"]), np.nan, dtype=np.float32)
    if tiles:
        with contextlib.ExitStack() as stack:
            datasets = [_in_frame(stack, stack.enter_context(rasterio.open(path)), box) for path in tiles]
            # dem-stitcher draws tqdm progress bars on stderr and shapely warns on degenerate overlaps: quiet.
            with quiet_warnings(), contextlib.redirect_stderr(io.StringIO()):
                merged, merged_profile = merge_tile_datasets_within_extent(
                    datasets, box.as_list(), nodata=np.nan, dtype=np.float32
                )
        reproject(
            merged,
            heights,
            src_transform=merged_profile["transform"],
            src_crs=merged_profile["crs"],
            src_nodata=np.nan,
            dst_transform=profile["transform"],
            dst_crs=profile["crs"],
            dst_nodata=np.nan,
            resampling=Resampling.nearest,  # the grids are aligned: a copy
        )
    heights[~np.isfinite(heights)] = 0.0  # no tile (ocean) or no data: at sea level, i.e. on the geoid
    out = _add_geoid(heights, profile, geoid)
    if not np.all(np.isfinite(out)):
        raise DemError(f"the geoid grid {geoid} does not cover the DEM box {box.describe()}")
    return out, profile


def _in_frame(stack: contextlib.ExitStack, dataset: Any, box: Box) -> Any:
    """A tile in the box's longitude frame: across the antimeridian, a tile west of it (-180..-179) is moved
    by +360° to continue the span east of 180 (as dem-stitcher's ``stitch_dem`` translates them)."""
    if not box.crosses_antimeridian or dataset.bounds.right > 0:
        return dataset
    from dem_stitcher.rio_tools import translate_dataset

    memory, moved = translate_dataset(dataset, 360.0 / dataset.res[0], 0)
    stack.enter_context(memory)
    return stack.enter_context(moved)


def _add_geoid(heights: np.ndarray, profile: dict[str, Any], geoid: Path) -> np.ndarray:
    """Heights above the geoid plus the geoid: dem-stitcher's ``remove_geoid`` (cubic, on the DEM's own grid).

    ``remove_geoid`` reads a box that crosses ±180° from both ends of a global geoid file and refuses one past a
    pole; ours is one continuous window (it may run past 180°, cover every longitude, or hold a pole's samples,
    whose pixels reach half a posting beyond it), so such a box is handed to it in slices of under 180° of
    longitude, each relabelled (mosaic and geoid alike) to be centred on 0° and clear of the poles: the
    interpolation only sees relative positions, so the result is the same.
    """
    import rasterio
    from affine import Affine
    from dem_stitcher.geoid import remove_geoid

    transform, width = profile["transform"], profile["width"]
    dx = float(transform.a)

    def add(block: np.ndarray, block_transform: Any, geoid_path: Path) -> np.ndarray:
        block_profile = {**profile, "count": 1, "width": block.shape[1], "transform": block_transform}
        with quiet_warnings():
            added = remove_geoid(block[None], block_profile, str(geoid_path))
        return np.asarray(added, dtype=np.float32).reshape(block.shape)

    top, bottom = float(transform.f), float(transform.f + transform.e * heights.shape[0])
    if transform.c >= -180.0 and transform.c + width * dx <= 180.0 and bottom >= -90.0 and top <= 90.0:
        return add(heights, transform, geoid)
    # a sample on a pole has half a pixel beyond it: moved in by that much as well
    lift = -90.0 - bottom if bottom < -90.0 else (90.0 - top if top > 90.0 else 0.0)
    with rasterio.open(geoid) as dataset:
        geoid_data, geoid_transform, geoid_crs = dataset.read(1), dataset.transform, dataset.crs
    out = np.empty(heights.shape, dtype=np.float32)
    step = max(int(179.0 / dx), 1)
    with tempfile.TemporaryDirectory(prefix="geoid-") as tmp:
        for start in range(0, width, step):
            stop = min(start + step, width)
            block_transform = transform @ Affine.translation(start, 0)
            shift = Affine.translation(-(block_transform.c + (stop - start) * dx / 2), lift)
            relabelled = write_heights(Path(tmp) / f"{start}.tif", geoid_data, shift @ geoid_transform, geoid_crs)
            out[:, start:stop] = add(heights[:, start:stop], shift @ block_transform, relabelled)
    return out


def _box_grid(box: Box, tiles: Sequence[Path]) -> dict[str, Any]:
    """A grid over the box aligned with GLO-30's sample centres (integer multiples of the posting)."""
    from affine import Affine
    from rasterio.crs import CRS

    dy = LAT_STEP_DEG
    dx = max(lon_step_deg(box.south), lon_step_deg(box.north))
    if tiles:
        import rasterio

        with rasterio.open(tiles[0]) as first:
            dx, dy = float(first.transform.a), float(-first.transform.e)
    west, east = math.floor(box.west / dx + 1e-6) * dx, math.ceil(box.east / dx - 1e-6) * dx
    south, north = math.floor(box.south / dy + 1e-6) * dy, math.ceil(box.north / dy - 1e-6) * dy
    width, height = round((east - west) / dx) + 1, round((north - south) / dy) + 1
    if box.all_longitudes:  # every longitude once: -180 .. 180 - dx (180 is -180 again)
        west, width = -180.0, round(360.0 / dx)
    return {
        "driver": "GTiff",
        "crs": CRS.from_epsg(4326),
        "transform": Affine(dx, 0.0, west - dx / 2, 0.0, -dy, north + dy / 2),
        "width": width,
        "height": height,
        "dtype": "float32",
        "nodata": np.nan,
    }


def write_heights(path: Path, data: np.ndarray, transform: Any, crs: Any = None, *, cog: bool = False) -> Path:
    """Heights as a single-band float32 GeoTIFF (EPSG:4326 unless ``crs``), written atomically: tiled and
    deflated, or ``cog`` a cloud-optimised GeoTIFF tagged pixel-is-point, as GLO-30 tiles are."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as copy_raster

    profile = {
        "driver": "GTiff",
        "height": data.shape[0],
        "width": data.shape[1],
        "count": 1,
        "dtype": "float32",
        "crs": crs or CRS.from_epsg(4326),
        "transform": transform,
        "nodata": np.nan,
    }
    with atomic_path(path) as tmp:
        if not cog:
            tiling = {"compress": "deflate", "predictor": 3, "tiled": True, "blockxsize": 256, "blockysize": 256}
            with rasterio.open(tmp, "w", **profile, **tiling) as out:
                out.write(data.astype(np.float32), 1)
        else:
            with MemoryFile() as memory:
                with memory.open(**profile) as dataset:
                    dataset.write(data.astype(np.float32), 1)
                    dataset.update_tags(AREA_OR_POINT="Point")
                with memory.open() as dataset:
                    copy_raster(dataset, str(tmp), driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES")
    return path


def _box_name(box: Box) -> str:
    def ns(v: float) -> str:
        return f"{'N' if v >= 0 else 'S'}{abs(v):07.4f}"

    def ew(v: float) -> str:
        return f"{'E' if v >= 0 else 'W'}{abs(v):08.4f}"

    return f"{ns(box.south)}_{ew(box.west)}_{ns(box.north)}_{ew(box.east)}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock across threads and processes (flock; released by the OS if the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
