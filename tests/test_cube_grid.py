"""The cube grid: CRS from the area, bounds snapped outward, fixed at creation and checked against each job."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from offset_cube.cube.grid import CubeGrid, auto_crs, grid_for_area
from offset_cube.errors import CubeError


def box(lon0: float, lat0: float, lon1: float, lat1: float) -> str:
    return f"POLYGON(({lon0} {lat0}, {lon1} {lat0}, {lon1} {lat1}, {lon0} {lat1}, {lon0} {lat0}))"


@pytest.mark.parametrize(
    ("area", "crs"),
    [
        (box(38.5, -69.0, 39.5, -68.5), "EPSG:3031"),  # Shirase Glacier
        (box(-50.0, 69.0, -49.0, 69.3), "EPSG:3413"),  # Jakobshavn
        (box(7.9, 46.4, 8.1, 46.6), "EPSG:32632"),  # Aletsch: UTM 32N
        (box(-73.6, -49.4, -73.4, -49.2), "EPSG:32718"),  # Patagonia: UTM 18S
        (box(-180.0, 10.0, -179.9, 10.1), "EPSG:32601"),
    ],
)
def test_auto_crs_follows_the_area_centroid(area: str, crs: str) -> None:
    assert auto_crs(shapely.from_wkt(area)) == crs


def test_bounds_are_snapped_outward_to_the_spacing_and_contain_the_area() -> None:
    area = box(7.9, 46.4, 8.1, 46.6)
    grid = grid_for_area(area, "auto", 120.0)
    for edge in grid.bounds:
        assert edge / 120.0 == pytest.approx(round(edge / 120.0), abs=1e-9)
    to_map = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    dense = shapely.get_coordinates(shapely.segmentize(shapely.from_wkt(area), 0.001))
    x, y = to_map.transform(dense[:, 0], dense[:, 1])
    x0, y0, x1, y1 = grid.bounds
    assert x0 <= np.min(x) and np.max(x) <= x1 and y0 <= np.min(y) and np.max(y) <= y1
    assert np.min(x) - x0 < 120 and x1 - np.max(x) < 120 and np.min(y) - y0 < 120 and y1 - np.max(y) < 120
    assert grid.x[0] == pytest.approx(x0 + 60) and grid.y[0] == pytest.approx(y1 - 60)  # centres, north-up
    assert grid.shape == (len(grid.y), len(grid.x))


def test_crs_and_spacing_can_be_overridden() -> None:
    grid = grid_for_area(box(38.5, -69.0, 39.5, -68.5), "EPSG:32737", 240.0)
    assert grid.crs == "EPSG:32737" and grid.spacing_m == 240.0 and grid.epsg == 32737
    with pytest.raises(CubeError, match="not projected"):
        grid_for_area(box(38.5, -69.0, 39.5, -68.5), "EPSG:4326", 120.0)


def test_an_area_too_large_for_the_spacing_is_refused() -> None:
    with pytest.raises(CubeError, match=r"cells of 10 m .*coarser grid.spacing_m"):
        grid_for_area(box(0.0, -80.0, 40.0, -70.0), "auto", 10.0)


def test_grid_round_trips_through_attributes_and_reports_differences() -> None:
    grid = grid_for_area(box(38.5, -69.0, 39.5, -68.5))
    assert CubeGrid.from_attrs(grid.to_attrs()) == grid
    assert grid.problems_against(grid) == []
    other = grid_for_area(box(38.5, -69.0, 39.6, -68.5), "EPSG:3031", 240.0)
    problems = " ".join(grid.problems_against(other))
    assert "spacing 240 m differs from 120 m" in problems and "bounds" in problems
    utm = grid_for_area(box(38.5, -69.0, 39.5, -68.5), "EPSG:32737")
    assert "CRS EPSG:32737 differs from EPSG:3031" in " ".join(grid.problems_against(utm))
    with pytest.raises(CubeError, match="no valid grid_"):
        CubeGrid.from_attrs({"grid_crs": "EPSG:3031"})
