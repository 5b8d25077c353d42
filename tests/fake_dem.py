"""A local stand-in for the GLO-30 tile bucket and the EGM2008 geoid grid, served over HTTP on 127.0.0.1.

Files are written with the project's own mirror writer (real GLO-30 tile names and folder layout, cloud-optimised
GeoTIFFs, a geoid GeoTIFF) and served with HEAD and byte ranges, as S3 serves them, because GDAL reads the geoid
window through ``/vsicurl/``. Tiles are coarsened (every 10th posting) so the tests stay fast; layout, naming and
format are the public source's. Every request is recorded; chosen paths can be made to fail.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from offset_cube.dem.glo30 import Box, glo30_tiles
from offset_cube.dem.mirror import write_cog, write_geoid, write_tile
from tests.local_http import QuietHandler, serve

#: Test tiles take every 10th posting (360 x 360 samples below 50°).
COARSEN = 10
GEOID_NAME = "us_nga_egm2008_1_4326__agisoft.tif"


def geoid_heights(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A smooth stand-in for EGM2008 undulations (tens of metres, varying over degrees)."""
    return np.asarray(20.0 + 15.0 * np.sin(np.radians(3 * lat)) * np.cos(np.radians(2 * lon)))


def terrain_above_geoid(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Heights above the geoid that differ in every tile (so a misplaced tile shows)."""
    return np.asarray(500.0 + 200.0 * (lat - np.floor(lat)) + 50.0 * (lon - np.floor(lon)) + 10.0 * np.floor(lon))


@dataclass
class DemServerState:
    root: Path
    requests: list[str] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # path -> HTTP status answered every time
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tile_requests(self) -> list[str]:
        return [p for p in self.requests if p.endswith("_DEM.tif")]


class DemHandler(QuietHandler):
    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        state: DemServerState = self.server.state
        path = self.path.split("?")[0].lstrip("/")
        with state.lock:
            state.requests.append(path)
        if path in state.fail:
            self.send_body(state.fail[path], b"SlowDown" if body else b"")
            return
        file = state.root / path
        if not file.is_file():
            self.send_body(404, b"<Error><Code>NoSuchKey</Code></Error>" if body else b"")
            return
        data = file.read_bytes()
        status, headers = 200, {"Accept-Ranges": "bytes", "Content-Type": "image/tiff"}
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start = int(match[1])
            end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


def write_source(root: Path, box: Box, geoid_box: Box | None = None, geoid: bool = True) -> list[str]:
    """Write the tiles the GLO-30 index lists over ``box`` and (unless ``geoid`` is false) a geoid grid around it;
    return the tile ids."""
    tiles = glo30_tiles(box)
    for tile in tiles:
        write_tile(root, tile, terrain_above_geoid, coarsen=COARSEN)
    if not geoid:
        return [t.tile_id for t in tiles]
    around = Box(box.west - 0.5, max(box.south - 0.5, -90), box.east + 0.5, min(box.north + 0.5, 90))
    write_geoid(root / GEOID_NAME, geoid_box or around, geoid_heights, step_deg=1.0 / 60.0)
    return [t.tile_id for t in tiles]


def write_global_geoid(path: Path, south: float, north: float, step_deg: float = 1.0 / 12.0) -> Path:
    """A geoid strip laid out as the global EGM2008 grid is: every longitude once, pixel edges on -180/180 (and on
    -90/90 where the strip reaches a pole), rows from ``south`` to ``north`` (coarser than EGM2008's 1′ for speed)."""
    top = min(step_deg * math.ceil(north / step_deg) + step_deg, 90.0)
    bottom = max(step_deg * math.floor(south / step_deg) - step_deg, -90.0)
    lats = top - step_deg / 2 - step_deg * np.arange(round((top - bottom) / step_deg))
    lons = -180.0 + step_deg / 2 + step_deg * np.arange(round(360.0 / step_deg))
    lat, lon = np.meshgrid(lats, lons, indexing="ij")
    return write_cog(path, geoid_heights(lat, lon).astype(np.float32), -180.0, top, step_deg, step_deg)


@contextmanager
def dem_server(root: Path) -> Iterator[tuple[str, DemServerState]]:
    """Serve ``root``; yield its base URL and the request log."""
    state = DemServerState(root)
    with serve(DemHandler, state) as port:
        yield f"http://127.0.0.1:{port}", state
