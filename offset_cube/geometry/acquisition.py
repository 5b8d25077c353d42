"""One acquisition date's products and orbit, and its look geometry at ground points, for both engines.

The orbit is the date's orbit file when one was found, else the annotations' state vectors. The look geometry
at a ground point is found the way the built-in engine finds it at a window centre: the point's zero-Doppler
time by ``geo2rdr``, then :func:`~offset_cube.geometry.rangedoppler.look_geometry` there (local incidence from
the ellipsoid normal, along-track ground heading, ground length of one azimuth line).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from offset_cube.eof import read_eof
from offset_cube.errors import EngineError, SafeError
from offset_cube.geometry.ellipsoid import geodetic_to_ecef
from offset_cube.geometry.orbit import Orbit
from offset_cube.geometry.rangedoppler import geo2rdr, look_geometry
from offset_cube.safe.archive import unpack_folder
from offset_cube.safe.product import SafeProduct

if TYPE_CHECKING:
    from offset_cube.stages import OrbitFile

#: Orbit vectors kept around the acquisition (s): interpolation needs a few on each side.
ORBIT_MARGIN_S = 120.0
#: Ground points per vectorised geo2rdr/look-geometry batch: bounds memory for large geocoded grids.
POINTS_PER_BATCH = 200_000


@dataclass(frozen=True)
class DateScene:
    """One date of the pair: its open products, orbit and orbit type."""

    products: tuple[SafeProduct, ...]
    orbit: Orbit
    orbit_type: str

    @property
    def paths(self) -> str:
        return ", ".join(str(p.path) for p in self.products)

    @property
    def product_ids(self) -> list[str]:
        return [p.product_id for p in self.products]


@contextlib.contextmanager
def open_date(
    safes: Sequence[Path], orbits: Sequence[OrbitFile], polarisation: str, unpack_root: Path | None = None
) -> Iterator[DateScene]:
    """Open one date's products (checked: IW SLC, holding ``polarisation``) and its orbit. With ``unpack_root``,
    zipped measurement TIFFs are unpacked to ``unpack_root/<product>/`` on first read
    (:func:`~offset_cube.safe.archive.unpack_folder`)."""
    if not safes:
        raise EngineError("a date of the pair has no SAFE products")
    with contextlib.ExitStack() as stack:
        products = []
        for path in safes:
            folder = None if unpack_root is None else unpack_folder(unpack_root, path)
            product = stack.enter_context(SafeProduct(path, unpack_dir=folder))
            product.require_polarisation(polarisation)
            products.append(product)
        orbit, orbit_type = date_orbit(products, orbits, polarisation)
        yield DateScene(tuple(products), orbit, orbit_type)


def date_orbit(products: Sequence[SafeProduct], orbits: Sequence[OrbitFile], polarisation: str) -> tuple[Orbit, str]:
    """The date's orbit: the orbit file when one is given, else the annotations' state vectors."""
    first = products[0].annotation(products[0].swaths(polarisation)[0], polarisation)
    epoch = first.first_line_time.replace(microsecond=0)
    annotations = [p.annotation(s, polarisation) for p in products for s in p.swaths(polarisation)]
    start = min((a.first_line_time - epoch).total_seconds() for a in annotations)
    stop = max((a.last_line_time - epoch).total_seconds() for a in annotations)
    files = [(o, o.path) for o in orbits if o.path is not None]
    if files:
        chosen, path = files[0]
        orbit = Orbit.from_eof(read_eof(path)).rebased(epoch).cropped(start, stop, ORBIT_MARGIN_S)
        orbit.require_span(start - 1.0, stop + 1.0, where=f"orbit file {path}")
        return orbit, chosen.orbit_type
    orbit = Orbit.merged([Orbit.from_annotation(a.orbit) for a in annotations]).rebased(epoch)
    orbit.require_span(start, stop, where=f"annotation state vectors of {products[0].path}")
    return orbit, "annotation"


@dataclass(frozen=True)
class LookGeometry:
    """What the look geometry at ground points needs from one date: its orbit and its swaths' sampling."""

    orbit: Orbit
    line_interval: float  # s, azimuth time interval of the swaths
    range_spacing: float  # m, slant-range pixel spacing of the swaths (annotation rangePixelSpacing)
    mid_time: float  # s since the orbit epoch: the swaths' mid time, geo2rdr's first guess

    def at(
        self, latitude: np.ndarray, longitude: np.ndarray, height: np.ndarray | float = 0.0
    ) -> dict[str, np.ndarray]:
        """Incidence, heading, azimuth skew, azimuth and range spacing (float64, shaped like ``latitude``) at points
        given by latitude, longitude (degrees) and ellipsoidal height (m)."""
        lat = np.asarray(latitude, dtype=np.float64)
        lon = np.broadcast_to(np.asarray(longitude, dtype=np.float64), lat.shape).ravel()
        h = np.broadcast_to(np.asarray(height, dtype=np.float64), lat.shape).ravel()
        names = ("incidence_angle", "heading", "azimuth_spacing", "azimuth_skew")
        out = {name: np.empty(lat.size) for name in names}
        for first in range(0, lat.size, POINTS_PER_BATCH):
            part = slice(first, first + POINTS_PER_BATCH)
            points = geodetic_to_ecef(lat.ravel()[part], lon[part], h[part])
            t, _slant = geo2rdr(self.orbit, points, self.mid_time)
            looks = look_geometry(self.orbit, t, points, self.line_interval)
            for name in names:
                out[name][part] = looks[name]
        result = {name: values.reshape(lat.shape) for name, values in out.items()}
        result["range_spacing"] = np.full(lat.shape, self.range_spacing)
        return result


def date_look_geometry(date: DateScene, polarisation: str, swaths: Sequence[str]) -> LookGeometry:
    """The look geometry of ``swaths`` (e.g. ``["IW2"]``) of one date's products."""
    annotations = [
        p.annotation(s, polarisation) for p in date.products for s in swaths if s.upper() in p.swaths(polarisation)
    ]
    if not annotations:
        raise SafeError(f"{date.paths}: no {polarisation.upper()} annotation for swaths {', '.join(swaths)}")
    intervals = {a.azimuth_time_interval_s for a in annotations}
    spacings = {a.range_pixel_spacing_m for a in annotations}
    if max(intervals) - min(intervals) > 1e-9 * max(intervals) or max(spacings) - min(spacings) > 1e-6:
        # IW swaths share one line interval and range sampling rate (the built-in engine's grid requires it too).
        raise SafeError(
            f"{date.paths}: swaths {', '.join(swaths)} differ in azimuth time interval {sorted(intervals)} or "
            f"range pixel spacing {sorted(spacings)}; they cannot share one geometry"
        )
    orbit = date.orbit
    start = min(orbit.seconds(a.first_line_time) for a in annotations)
    stop = max(orbit.seconds(a.last_line_time) for a in annotations)
    return LookGeometry(
        orbit, annotations[0].azimuth_time_interval_s, annotations[0].range_pixel_spacing_m, (start + stop) / 2
    )
