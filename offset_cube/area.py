"""Area of interest: parse a WKT string or a GeoJSON file, validate it, repair what is safe to repair.

The area is always longitude/latitude (WGS84, EPSG:4326). Safe repairs are: dropping Z values, orienting rings
counter-clockwise, and removing repeated vertices. A polygon whose boundary crosses itself is rejected, since
there is no single right way to repair it.
"""

from __future__ import annotations

import json
from pathlib import Path

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from shapely.ops import unary_union
from shapely.validation import explain_validity

from offset_cube.errors import AreaError

_WKT_PREFIXES = (
    "POLYGON",
    "MULTIPOLYGON",
    "POINT",
    "MULTIPOINT",
    "LINESTRING",
    "MULTILINESTRING",
    "GEOMETRYCOLLECTION",
)
_HINT = "give a WKT POLYGON((lon lat, ...)) in WGS84 degrees or the path of a GeoJSON file"


def parse_area(value: str) -> Polygon | MultiPolygon:
    """Return the validated, repaired polygon named by ``value`` (WKT text or a GeoJSON file path)."""
    text = value.strip()
    if not text:
        raise AreaError(f"area is empty; {_HINT}")
    geom = _load_wkt(text) if text.upper().startswith(_WKT_PREFIXES) else _load_geojson(Path(text))
    return _validate(geom, text)


def area_to_wkt(geom: BaseGeometry) -> str:
    """WKT with enough digits for ~1 mm on the ground and no trailing zeros."""
    return str(shapely.to_wkt(geom, rounding_precision=8, trim=True))


def _load_wkt(text: str) -> BaseGeometry:
    try:
        return shapely.from_wkt(text)
    except shapely.errors.GEOSException as err:
        raise AreaError(f"area is not valid WKT ({err}): {_short(text)!r}; {_HINT}") from err


def _load_geojson(path: Path) -> BaseGeometry:
    if not path.is_file():
        raise AreaError(f"area {_short(str(path))!r} is neither WKT nor an existing GeoJSON file; {_HINT}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AreaError(f"area file {path} is not readable GeoJSON ({err}); {_HINT}") from err
    geometries = _geojson_geometries(doc, path)
    try:
        shapes = [shape(g) for g in geometries]
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as err:
        raise AreaError(f"area file {path} holds an invalid GeoJSON geometry ({err})") from err
    return shapes[0] if len(shapes) == 1 else unary_union(shapes)


def _geojson_geometries(doc: object, path: Path) -> list[dict[str, object]]:
    if not isinstance(doc, dict):
        raise AreaError(f"area file {path} is not a GeoJSON object; {_HINT}")
    kind = doc.get("type")
    if kind == "FeatureCollection":
        features = doc.get("features") or []
        geoms = [f.get("geometry") for f in features if isinstance(f, dict) and f.get("geometry")]
    elif kind == "Feature":
        geoms = [doc.get("geometry")] if doc.get("geometry") else []
    elif kind in ("Polygon", "MultiPolygon", "GeometryCollection", "Point", "LineString"):
        geoms = [doc]
    else:
        raise AreaError(f"area file {path} has GeoJSON type {kind!r}; expected FeatureCollection, Feature or Polygon")
    if not geoms:
        raise AreaError(f"area file {path} holds no geometry")
    return [g for g in geoms if isinstance(g, dict)]


def _validate(geom: BaseGeometry, source: str) -> Polygon | MultiPolygon:
    if geom.is_empty:
        raise AreaError(f"area {_short(source)!r} is empty; {_HINT}")
    if not isinstance(geom, Polygon | MultiPolygon):
        raise AreaError(f"area {_short(source)!r} is a {geom.geom_type}; it must be a Polygon or MultiPolygon")
    geom = shapely.force_2d(geom)
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise AreaError(
            f"area {_short(source)!r} has coordinates outside lon [-180, 180] / lat [-90, 90] "
            f"(bounds {minx:.4f}, {miny:.4f}, {maxx:.4f}, {maxy:.4f}); coordinates are 'lon lat'"
        )
    if maxx - minx > 180:
        raise AreaError(
            f"area {_short(source)!r} spans {maxx - minx:.1f} degrees of longitude (bounds {minx:.4f} to "
            f"{maxx:.4f}); an area that crosses the antimeridian (±180°) or contains a pole is not supported: give "
            "areas that each lie on one side of ±180° and away from the poles (one job each); near ±180° the "
            "automatic DEM still reaches across it"
        )
    geom = shapely.remove_repeated_points(geom)
    if not geom.is_valid:
        raise AreaError(f"area {_short(source)!r} is not a valid polygon: {explain_validity(geom)}")
    if geom.area <= 0:
        raise AreaError(f"area {_short(source)!r} has zero area")
    if isinstance(geom, Polygon):
        return orient(geom, sign=1.0)
    return MultiPolygon([orient(p, sign=1.0) for p in geom.geoms])


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
