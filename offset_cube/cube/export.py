"""Describe a cube (layers, dates, Δt, coverage) and export a layer or the whole cube to NetCDF or GeoTIFF."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from rasterio.transform import Affine

from offset_cube.atomic import atomic_path
from offset_cube.conventions import PairRecord
from offset_cube.cube.grid import CubeGrid
from offset_cube.cube.layers import layer_records
from offset_cube.cube.lookup import PAIR_ID_VARIABLE
from offset_cube.cube.product import VARIABLES
from offset_cube.cube.schema import cube_chunks
from offset_cube.cube.versions import current_version, open_cube
from offset_cube.cube.zarrio import TIME_ENCODING
from offset_cube.errors import CubeError

EXPORT_FORMATS = ("netcdf", "geotiff")


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a cube: its position, mid date, coverage and pair record."""

    index: int
    mid_date: str
    coverage_pct: float
    record: PairRecord

    @property
    def pair_id(self) -> str:
        return self.record.pair_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "mid_date": self.mid_date,
            **self.record.summary(),
            "coverage_pct": self.coverage_pct,
        }


@dataclass(frozen=True)
class CubeInfo:
    path: Path
    version: str
    grid: CubeGrid
    created: str
    updated: str
    software_version: str
    layers: list[LayerInfo]
    record_type: type[PairRecord] = PairRecord

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "version": self.version,
            "grid": self.grid.describe(),
            "crs": self.grid.crs,
            "created": self.created,
            "updated": self.updated,
            "software_version": self.software_version,
            "layers": [layer.as_dict() for layer in self.layers],
        }

    def table(self, layers: Sequence[LayerInfo] | None = None) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the layer table (``inspect`` and the cube-summary artifact): position, the record's
        fields that have a column, mid date and coverage."""
        columns = [f for f in self.record_type.fields() if f.convention.column is not None]
        header = ["#", "mid date (UTC)", *(str(f.convention.column) for f in columns), "coverage %"]
        rows = [
            [
                str(la.index),
                la.mid_date.replace("T", " ")[:16],
                *(f.convention.fmt.format(getattr(la.record, f.name)) for f in columns),
                f"{la.coverage_pct:.1f}",
            ]
            for la in (self.layers if layers is None else layers)
        ]
        return header, rows


def describe_cube(cube: Path, record_type: type[PairRecord] = PairRecord) -> CubeInfo:
    """Layers with their pair records, mid dates and coverage (percentage of grid cells with a velocity)."""
    version = current_version(cube)
    with open_cube(cube) as ds:
        coverage = layer_coverage(ds)
        mid = ds["mid_date"].values.astype("datetime64[s]").astype(str)
        layers = [
            LayerInfo(index=i, mid_date=str(mid[i]), coverage_pct=round(float(coverage[i]), 2), record=record)
            for i, record in enumerate(layer_records(ds, record_type))
        ]
        return CubeInfo(
            path=cube,
            version=version.name if version else "",
            grid=CubeGrid.from_attrs(ds.attrs, where=str(cube)),
            created=str(ds.attrs.get("date_created", "")),
            updated=str(ds.attrs.get("date_updated", "")),
            software_version=str(ds.attrs.get("software_version", "")),
            layers=layers,
            record_type=record_type,
        )


def layer_coverage(ds: xr.Dataset) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Percentage of cells with a finite ``v`` per layer, read one time chunk at a time."""
    n = ds.sizes["mid_date"]
    cells = ds.sizes["y"] * ds.sizes["x"]
    out = np.zeros(n)
    step = cube_chunks(ds)[0]
    for t0 in range(0, n, step):
        block = ds["v"].isel(mid_date=slice(t0, t0 + step)).values
        out[t0 : t0 + block.shape[0]] = np.isfinite(block).sum(axis=(1, 2)) * 100.0 / max(cells, 1)
    return out


def select_layer(pair_ids: Sequence[str], layer: str) -> int:
    """The index of ``layer`` among ``pair_ids``: a pair id, or an integer index (negative counts from the end)."""
    ids = [str(p) for p in pair_ids]
    if layer in ids:
        return ids.index(layer)
    try:
        index = int(layer)
    except ValueError:
        shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
        raise CubeError(f"layer {layer!r} is neither a pair id in the cube ({shown}) nor an index") from None
    if not -len(ids) <= index < len(ids):
        raise CubeError(f"layer index {index} is out of range; the cube has {len(ids)} layer(s) (0..{len(ids) - 1})")
    return index % len(ids)


def export_netcdf(cube: Path, out: Path, layer: str | None = None) -> Path:
    """The whole cube, or one layer (keeping ``mid_date`` of length 1), as a compressed NetCDF-4 file."""
    with open_cube(cube) as ds:
        if layer is not None:
            ds = ds.isel(mid_date=[select_layer(_pair_ids(ds), layer)])
        for name in list(ds.variables):
            ds[name].encoding = {}  # Zarr codecs and chunks mean nothing to NetCDF
            if ds[name].dtype.kind == "T":  # numpy StringDType → object strings for the NetCDF writer
                ds[name] = ds[name].astype(object)
        encoding: dict[str, dict[str, Any]] = {}
        for name in VARIABLES:
            encoding[name] = {"zlib": True, "complevel": 4, "shuffle": True, "_FillValue": np.float32(np.nan)}
        for name in ("mid_date", *_layer_time_variables(ds)):
            encoding[name] = dict(TIME_ENCODING)
        with atomic_path(out) as tmp:
            ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
    return out


def export_geotiff(cube: Path, out: Path, layer: str | None = None) -> list[Path]:
    """One layer as a 6-band GeoTIFF at ``out``; without ``layer``, one file per layer in the folder ``out``."""
    with open_cube(cube) as ds:
        grid = CubeGrid.from_attrs(ds.attrs, where=str(cube))
        if layer is not None:
            return [_write_geotiff(ds, select_layer(_pair_ids(ds), layer), grid, out)]
        out.mkdir(parents=True, exist_ok=True)
        return [
            _write_geotiff(ds, i, grid, out / f"{ds['pair_id'].values[i]}.tif") for i in range(ds.sizes["mid_date"])
        ]


def _write_geotiff(ds: xr.Dataset, index: int, grid: CubeGrid, path: Path) -> Path:
    layer = ds.isel(mid_date=index)
    names = list(VARIABLES)
    profile = {
        "driver": "GTiff",
        "width": grid.nx,
        "height": grid.ny,
        "count": len(names),
        "dtype": "float32",
        "crs": grid.pyproj_crs().to_wkt(),
        "transform": Affine(grid.spacing_m, 0.0, grid.x_min, 0.0, -grid.spacing_m, grid.y_max),
        "nodata": np.nan,
        "compress": "deflate",
        "tiled": True,
    }
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for band, name in enumerate(names, start=1):
            dst.write(layer[name].values.astype(np.float32), band)
            dst.set_band_description(band, f"{name} ({VARIABLES[name]['units']})")
        dst.update_tags(mid_date=str(layer["mid_date"].values), **_layer_tags(layer))
    return path


def _pair_ids(ds: xr.Dataset) -> list[str]:
    return [str(p) for p in ds[PAIR_ID_VARIABLE].values]


def _layer_variables(ds: xr.Dataset) -> list[str]:
    """The cube's 1-D layer variables (whatever pair record wrote them)."""
    return [str(name) for name, var in ds.data_vars.items() if var.dims == ("mid_date",)]


def _layer_time_variables(ds: xr.Dataset) -> list[str]:
    return [name for name in _layer_variables(ds) if ds[name].dtype.kind == "M"]


def _layer_tags(layer: xr.Dataset) -> dict[str, str]:
    """GeoTIFF tags of one layer: every 1-D layer variable, named with its units where it has some."""
    tags: dict[str, str] = {}
    for name in (str(n) for n, var in layer.data_vars.items() if var.dims == ()):
        units = layer[name].attrs.get("units")
        tags[f"{name}_{units}" if units else name] = str(layer[name].values)
    return tags
