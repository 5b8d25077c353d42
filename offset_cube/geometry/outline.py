"""Points along the outline of an area (lon/lat), for mapping an area into radar or map coordinates."""

from __future__ import annotations

import numpy as np
from shapely.geometry import MultiPolygon, Polygon


def outline_lon_lat(area: Polygon | MultiPolygon, step_deg: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes and latitudes of every exterior ring, with vertices at most ``step_deg`` apart."""
    polygons = list(area.geoms) if isinstance(area, MultiPolygon) else [area]
    points = np.concatenate([np.asarray(p.segmentize(step_deg).exterior.coords) for p in polygons])
    return points[:, 0], points[:, 1]
