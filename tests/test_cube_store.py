"""The cube store: sorted unique mid_date, idempotent inserts, explicit replace, versions, CF/ITS_LIVE schema.

Most tests shrink the time chunk to 2 layers so a handful of synthetic products spans several chunks and the
copy-on-write path (linked unchanged chunks, rewritten tail) is exercised.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from offset_cube.cube import durability, store
from offset_cube.cube.grid import grid_for_area
from offset_cube.cube.lock import CubeLock, CubeLockedError
from offset_cube.cube.lookup import existing_pair_ids
from offset_cube.cube.product import read_product
from offset_cube.cube.store import InsertReport, grid_for_cube, insert_products
from offset_cube.cube.versions import KEEP_PREVIOUS_VERSIONS, open_cube, versions_dir
from offset_cube.errors import CubeError
from tests.cube_synth import SOUTH_AREA, make_products, south_grid


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_products(tmp_path_factory.mktemp("products"))


@pytest.fixture(autouse=True)
def small_time_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "TIME_CHUNK", 2)


def insert(cube: Path, paths: list[Path], replace: bool = False) -> InsertReport:
    return insert_products(cube, paths, grid=south_grid(), area_wkt=SOUTH_AREA, replace=replace, lock_timeout_s=5)


def pair_of(products: dict[str, Path], name: str) -> str:
    return str(read_product(products[name]).attrs["pair_id"])


def layer(cube: Path, pair_id: str, var: str = "vx") -> np.ndarray:
    with open_cube(cube) as ds:
        index = [str(p) for p in ds["pair_id"].values].index(pair_id)
        return np.asarray(ds[var].isel(mid_date=index).values)


def test_shuffled_inserts_give_sorted_unique_mid_dates_and_the_right_data(
    tmp_path: Path, products: dict[str, Path]
) -> None:
    cube = tmp_path / "cube.zarr"
    for batch in (["D"], ["C", "A"], ["E"], ["B"]):  # backfills land in the middle and at the start
        insert(cube, [products[n] for n in batch])
        with xr.open_zarr(cube) as ds:
            mids = ds["mid_date"].values
            assert np.all(np.diff(mids) > np.timedelta64(0, "ns")), "mid_date must be strictly increasing"
    expected = [pair_of(products, n) for n in ("A", "E", "B", "C", "D")]
    with xr.open_zarr(cube) as ds:
        assert [str(p) for p in ds["pair_id"].values] == expected
        assert ds["track"].values.tolist() == [12, 40, 12, 12, 12]
        assert ds["date_dt"].values == pytest.approx([12.0] * 5)
        mid = (
            ds["acquisition_date_img1"].values
            + (ds["acquisition_date_img2"].values - ds["acquisition_date_img1"].values) / 2
        )
        assert np.array_equal(ds["mid_date"].values, mid)
    for name in ("A", "B", "C", "D", "E"):
        assert np.array_equal(
            layer(cube, pair_of(products, name)), read_product(products[name])["vx"].values, equal_nan=True
        )
    # the same layers inserted in one go give the same cube data
    at_once = tmp_path / "at_once.zarr"
    insert(at_once, [products[n] for n in ("E", "D", "C", "B", "A")])
    with open_cube(cube) as a, open_cube(at_once) as b:
        xr.testing.assert_equal(a[["vx", "v", "snr", "pair_id"]].load(), b[["vx", "v", "snr", "pair_id"]].load())


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def test_inserting_the_same_pair_twice_changes_nothing(tmp_path: Path, products: dict[str, Path]) -> None:
    cube = tmp_path / "cube.zarr"
    first = insert(cube, [products["A"], products["B"]])
    assert first.added == (pair_of(products, "A"), pair_of(products, "B")) and first.version is not None
    link, before = os.readlink(cube), _snapshot(tmp_path)
    again = insert(cube, [products["B"], products["A"]])
    assert again.added == () and again.replaced == () and again.version is None
    assert again.skipped == (pair_of(products, "A"), pair_of(products, "B")) and again.layers == 2
    assert os.readlink(cube) == link
    assert {k: v for k, v in _snapshot(tmp_path).items() if not k.endswith(".lock")} == {
        k: v for k, v in before.items() if not k.endswith(".lock")
    }


def test_replace_rewrites_a_layer_only_when_asked(tmp_path: Path, products: dict[str, Path]) -> None:
    cube = tmp_path / "cube.zarr"
    insert(cube, [products["A"], products["B"], products["C"]])
    pid = pair_of(products, "A")
    original = layer(cube, pid)
    silent = insert(cube, [products["A2"]])
    assert silent.skipped == (pid,) and silent.version is None
    assert np.array_equal(layer(cube, pid), original, equal_nan=True)

    replaced = insert(cube, [products["A2"]], replace=True)
    assert replaced.replaced == (pid,) and replaced.added == () and replaced.layers == 3
    assert np.array_equal(layer(cube, pid), read_product(products["A2"])["vx"].values, equal_nan=True)
    assert np.nanmean(layer(cube, pid, "azimuth_offset")) == pytest.approx(3.0)
    assert np.array_equal(layer(cube, pair_of(products, "C")), read_product(products["C"])["vx"].values, equal_nan=True)
    assert existing_pair_ids(cube) == {pair_of(products, n) for n in ("A", "B", "C")}


def test_cube_opens_with_plain_xarray_crs_units_and_dims(tmp_path: Path, products: dict[str, Path]) -> None:
    cube = tmp_path / "cube.zarr"
    insert_products(
        cube, [products["A"], products["B"]], grid=south_grid(), area_wkt=SOUTH_AREA, job_config='{"name": "t"}'
    )
    with xr.open_zarr(cube) as ds:  # no consolidated-metadata warning (warnings are errors here)
        assert ds["vx"].dims == ("mid_date", "y", "x") and ds.sizes["mid_date"] == 2
        assert ds.rio.crs.to_epsg() == 3031
        assert ds["mapping"].attrs["spatial_epsg"] == 3031 and "GeoTransform" in ds["mapping"].attrs
        for name in ("vx", "vy", "v"):
            assert ds[name].dtype == np.float32 and ds[name].attrs["units"] == "meter/year"
            assert ds[name].attrs["grid_mapping"] == "mapping" and ds[name].attrs["long_name"]
        assert ds["vx"].attrs["standard_name"] == "land_ice_surface_x_velocity"
        assert ds["azimuth_offset"].attrs["units"] == "pixel" and ds["snr"].attrs["units"] == "1"
        assert ds["x"].attrs["standard_name"] == "projection_x_coordinate" and ds["y"].values[0] > ds["y"].values[-1]
        assert ds["date_dt"].attrs["units"] == "days"
        assert ds["vx"].encoding["chunks"] == (2, 59, 56)
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["job_config"] == '{"name": "t"}'
        assert ds.attrs["projection"] == "3031" and ds.attrs["software_version"]
        assert ds.attrs["date_created"] <= ds.attrs["date_updated"]
        assert str(ds["granule_img1"].values[0]).startswith("S1A_IW_SLC__1SSH_20200101")
        assert json.loads(str(ds["processing_parameters"].values[0]))["product"]["snr_threshold"] == 4.0
        assert {str(o) for o in ds["orbit_type"].values} == {"POEORB"} and ds["engine"].values[0] == "builtin"
        assert ds["roi_valid_percentage"].values == pytest.approx([100.0, 100.0])
        assert np.isnan(ds["vx"].encoding["_FillValue"])


def test_equal_midpoints_are_stepped_one_microsecond_apart(tmp_path: Path, products: dict[str, Path]) -> None:
    cube = tmp_path / "cube.zarr"
    insert(cube, [products["F"], products["A"]])
    with xr.open_zarr(cube) as ds:
        assert [str(p) for p in ds["pair_id"].values] == [pair_of(products, "A"), pair_of(products, "F")]
        assert ds["mid_date"].values[1] - ds["mid_date"].values[0] == np.timedelta64(1, "us")


def test_new_versions_link_unchanged_chunks_and_old_versions_are_pruned(
    tmp_path: Path, products: dict[str, Path]
) -> None:
    cube = tmp_path / "cube.zarr"
    first = insert(cube, [products[n] for n in ("A", "B", "C")])  # time chunks: [A B] [C]
    second = insert(cube, [products["D"]])  # appends to chunk 1: chunk 0 is linked, not rewritten
    assert first.version is not None and second.version is not None
    old_chunk, new_chunk = first.version / "vx/c/0/0/0", second.version / "vx/c/0/0/0"
    assert new_chunk.stat().st_ino == old_chunk.stat().st_ino
    assert (second.version / "vx/c/1/0/0").stat().st_ino != (first.version / "vx/c/1/0/0").stat().st_ino
    assert cube.resolve() == second.version
    for name in ("E", "F"):
        insert(cube, [products[name]])
    versions = sorted(p.name for p in versions_dir(cube).iterdir() if p.is_dir())
    assert len(versions) == KEEP_PREVIOUS_VERSIONS + 1 and cube.resolve().name == versions[-1]
    records = sorted(p.name for p in versions_dir(cube).glob("*.integrity.json"))
    assert records == [f"{v}.integrity.json" for v in versions]  # pruned versions' records went with them


def test_a_job_that_disagrees_with_the_cube_is_refused(tmp_path: Path, products: dict[str, Path]) -> None:
    cube = tmp_path / "cube.zarr"
    insert(cube, [products["A"]])
    assert grid_for_cube(cube, south_grid(), SOUTH_AREA) == south_grid()
    coarse = grid_for_area(SOUTH_AREA, "auto", 240.0)
    with pytest.raises(CubeError, match=r"spacing 240 m differs from 120 m.*fixed when it is created"):
        grid_for_cube(cube, coarse, SOUTH_AREA)
    other_area = SOUTH_AREA.replace("100.08", "100.09")
    with pytest.raises(CubeError, match="area POLYGON"):
        grid_for_cube(cube, grid_for_area(other_area), other_area)
    with pytest.raises(CubeError, match="is not on the cube grid"):
        insert_products(cube, [products["B"]], grid=coarse, area_wkt=SOUTH_AREA)
    plain = tmp_path / "plain.zarr"
    shutil.copytree(cube.resolve(), plain)
    with pytest.raises(CubeError, match="plain folder, not an offset-cube cube"):
        insert(plain, [products["B"]])


def test_a_writer_waits_for_the_lock_and_names_its_holder(tmp_path: Path) -> None:
    lock = tmp_path / "cube.zarr.lock"
    with (
        CubeLock(lock, timeout_s=1),
        pytest.raises(CubeLockedError, match=rf"held by PID {os.getpid()}"),
        CubeLock(lock, timeout_s=0.3),
    ):
        pass
    with CubeLock(lock, timeout_s=0.3):  # released: the next writer gets it at once
        pass
    assert CubeLockedError("x").transient


def test_without_syncfs_each_written_file_and_folder_is_fsynced(
    tmp_path: Path, products: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real_fsync = durability.fsync
    monkeypatch.setattr(durability, "syncfs", lambda path: False)
    monkeypatch.setattr(durability, "fsync", lambda path: synced.append(path) or real_fsync(path))
    cube = tmp_path / "cube.zarr"
    insert(cube, [products["A"], products["B"], products["C"]])  # time chunks [A B] [C]
    synced.clear()
    report = insert(cube, [products["D"]])  # chunk 0 linked, chunk 1 rewritten
    assert report.version is not None and (report.version / "vx/c/0/0/0").stat().st_nlink > 1
    depth = len(versions_dir(cube).parts) + 1  # paths inside the temporary version folder
    inside = {"/".join(p.parts[depth:]) for p in synced if len(p.parts) > depth}
    assert {"vx/c/1/0/0", "vx/c/0/0", "vx/zarr.json", "zarr.json"} <= inside
    assert "vx/c/0/0/0" not in inside  # a linked chunk: durable since the previous version


def test_integrity_record_survives_inserts_and_names_a_deleted_chunk_which_stops_the_next_insert(
    tmp_path: Path, products: dict[str, Path]
) -> None:
    """Zarr reads a missing chunk as NaN: without the record the cube looked whole, and the next insert copied
    the NaNs into the new version."""
    from typer.testing import CliRunner

    from flows.cli import app
    from offset_cube.cube import integrity

    cube = tmp_path / "cube.zarr"
    for batch in (["C", "D"], ["A"], ["E"]):  # appends and a backfill: linked, carried and rewritten chunks
        insert(cube, [products[n] for n in batch])
    version = cube.resolve()
    with open_cube(cube) as ds:
        ids = [str(p) for p in ds["pair_id"].values]  # layer order (by mid_date)
    assert sorted(ids) == sorted(pair_of(products, n) for n in "ACDE")
    intact = integrity.verify(version, ids)
    assert intact.ok and intact.has_record, intact.describe(ids, 2)
    record = integrity.read_record(version)
    assert record is not None
    assert record["layers"][ids[0]]["vx"] == int(np.isfinite(layer(cube, ids[0])).sum()) > 0

    chunk = sorted(p for p in (version / "vx" / "c" / "1").rglob("*") if p.is_file())[0]  # layers 2 and 3
    name = chunk.relative_to(version).as_posix()
    chunk.unlink()

    found = integrity.verify(version, ids)
    assert found.missing_files == [name]
    assert sorted(found.damaged_layers) == sorted(ids[2:])  # fewer valid vx cells than recorded
    assert all("vx:" in what[0] for what in found.damaged_layers.values())
    with pytest.raises(CubeError, match="damaged") as caught:
        insert(cube, [products["B"]])
    assert name in str(caught.value) and f"layers {ids[2]}..{ids[3]}" in str(caught.value)
    assert cube.resolve() == version  # nothing built on top of the damage

    result = CliRunner().invoke(app, ["inspect", str(cube), "--verify"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0] and ids[3] in lines[0]
    plain = CliRunner().invoke(app, ["inspect", str(cube)])
    assert plain.exit_code == 0 and f"warning: {cube}" in plain.stderr and name in plain.stderr


def test_verify_finds_a_chunk_changed_in_place(tmp_path: Path, products: dict[str, Path]) -> None:
    from offset_cube.cube import integrity

    cube = tmp_path / "cube.zarr"
    insert(cube, [products["A"], products["B"]])
    version = cube.resolve()
    chunk = sorted(p for p in (version / "v" / "c").rglob("*") if p.is_file())[0]
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF  # same size: only the digest tells
    chunk.write_bytes(bytes(data))
    ids = [pair_of(products, n) for n in "AB"]
    assert integrity.damage(version).ok
    found = integrity.verify(version, ids)
    assert found.changed_files == [chunk.relative_to(version).as_posix()]
    assert sorted(found.damaged_layers) == sorted(ids)  # one time chunk holds both layers: neither decodes
    assert all("unreadable" in what[0] for what in found.damaged_layers.values())
