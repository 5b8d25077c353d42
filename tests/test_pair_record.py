"""The one pair record: attributes round trip, and a field added in one place reaches the product, the cube, the
``inspect`` table and both exports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest
import rasterio
import xarray as xr

from offset_cube.config import ProductConfig
from offset_cube.conventions import Convention, PairRecord
from offset_cube.cube.export import describe_cube, export_geotiff, export_netcdf
from offset_cube.cube.product import make_pair_product, read_product
from offset_cube.cube.store import insert_products
from offset_cube.cube.versions import open_cube
from offset_cube.result import read_pair_result, result_attrs
from tests.cube_synth import SOUTH_AREA, acquisition, south_grid, synthetic_result


@dataclass(frozen=True, kw_only=True)
class RecordWithBaseline(PairRecord):
    """The one edit: a new field with its convention."""

    perpendicular_baseline_m: Annotated[
        float | None,
        Convention("perpendicular baseline", units="m", dtype="float32", column="B⊥ (m)", fmt="{:.0f}"),
    ] = None


def record() -> PairRecord:
    return PairRecord(
        pair_id="20200101_20200113_t012",
        track=12,
        direction="ASCENDING",
        engine="builtin",
        reference_time="2020-01-01T03:12:00Z",
        secondary_time="2020-01-13T03:12:00Z",
        dt_days=12.0,
        reference_granules=("S1A_A", "S1A_B"),
        secondary_granules=("S1B_C",),
        orbit_type="POEORB",
        polarization="HH",
        processing_parameters={"window": [64, 16]},
    )


def test_record_round_trips_through_attributes() -> None:
    attrs = record().to_attrs()
    assert attrs["reference_granules"] == "S1A_A S1A_B" and json.loads(attrs["processing_parameters"])["window"]
    assert "valid_percentage" not in attrs  # unset until the product stage
    assert PairRecord.from_attrs(attrs) == record()
    with pytest.raises(ValueError, match="track"):
        PairRecord.from_attrs({k: v for k, v in attrs.items() if k != "track"})
    with pytest.raises(ValueError, match="reference_time 'noon'"):
        PairRecord.from_attrs({**attrs, "reference_time": "noon"})


def test_a_pair_result_carries_its_record_and_nothing_else_by_hand(tmp_path: Path) -> None:
    """Engines make a result's attributes only from the record (and the grid layout): reading them back gives the
    same record, and writing that record again gives the same attributes."""
    result = synthetic_result(tmp_path, acquisition(0), acquisition(12), size=(20, 20))
    ds = read_pair_result(result)
    stored = PairRecord.from_attrs(ds.attrs)
    assert stored.pair_id == result.parent.name and stored.reference_granules[0].endswith("_REF")
    assert result_attrs(stored, grid=ds.attrs["grid"]) == ds.attrs


def test_a_field_added_to_the_record_reaches_the_cube_and_the_exports(tmp_path: Path) -> None:
    def add_baseline(ds: xr.Dataset) -> None:
        ds.attrs["perpendicular_baseline_m"] = 42.0

    result = synthetic_result(tmp_path / "r", acquisition(0), acquisition(12), size=(40, 40), edit=add_baseline)
    product = make_pair_product(result, south_grid(), ProductConfig(), tmp_path / "p.zarr", RecordWithBaseline)
    assert read_product(product).attrs["perpendicular_baseline_m"] == 42.0
    cube = tmp_path / "cube.zarr"
    insert_products(cube, [product], grid=south_grid(), area_wkt=SOUTH_AREA, record_type=RecordWithBaseline)
    with open_cube(cube) as ds:
        assert ds["perpendicular_baseline_m"].dims == ("mid_date",)
        assert ds["perpendicular_baseline_m"].attrs["units"] == "m" and float(ds["perpendicular_baseline_m"][0]) == 42

    info = describe_cube(cube, RecordWithBaseline)
    assert info.as_dict()["layers"][0]["perpendicular_baseline_m"] == 42.0
    header, rows = info.table()
    assert rows[0][header.index("B⊥ (m)")] == "42"
    with xr.open_dataset(export_netcdf(cube, tmp_path / "cube.nc")) as nc:
        assert float(nc["perpendicular_baseline_m"][0]) == 42.0
    (tif,) = export_geotiff(cube, tmp_path / "layer.tif", layer="0")
    with rasterio.open(tif) as src:
        assert float(src.tags()["perpendicular_baseline_m_m"]) == 42.0

    # The base record still reads this cube, and the new record reads a cube written without the field.
    assert describe_cube(cube).layers[0].record.pair_id == info.layers[0].record.pair_id
    plain = tmp_path / "plain.zarr"
    insert_products(plain, [product], grid=south_grid(), area_wkt=SOUTH_AREA)
    old = describe_cube(plain, RecordWithBaseline).layers[0].record
    assert isinstance(old, RecordWithBaseline) and old.perpendicular_baseline_m is None and old.track == 12
