"""``offset-cube track`` and its files: ISCE / .npy / GeoTIFF inputs, Zarr output, ISCE2's dense-offset rasters."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from flows.cli import app
from offset_cube.isce_raster import read_band
from offset_cube.track_files import ISCE_COV, ISCE_OFFSETS, ISCE_SNR, open_image, write_isce_offsets
from offset_cube.tracking.synthetic import constant_shift_pair
from tests.conftest import data_path

runner = CliRunner()
GRID = ["--window", "64x16", "--search", "20x8", "--skip", "32x16"]


def test_isce_pair_to_zarr_and_isce_rasters(tmp_path: Path) -> None:
    folder = data_path("isce")
    out, isce = tmp_path / "offsets.zarr", tmp_path / "isce"
    args = ["track", str(folder / "ref.slc"), str(folder / "sec.slc.xml"), *GRID, "--mode", "complex"]
    result = runner.invoke(app, [*args, "--out", str(out), "--isce-format", str(isce), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip())
    assert set(summary) == {"windows", "valid", "seconds", "windows_per_second"}
    ds = xr.open_zarr(out, consolidated=False)
    assert summary["windows"] == ds.azimuth_offset.size and summary["valid"] > 0.99 * summary["windows"]
    assert ds.azimuth_offset.dims == ("line", "sample") and ds.attrs["mode"] == "complex"
    assert float(ds.line[0]) == 8 + 7.5 and float(ds.sample[0]) == 20 + 31.5
    # the field of the fixture ranges -2.2..0.8 px down and -0.5..3.5 px across
    assert float(ds.azimuth_offset.min()) > -2.4 and float(ds.azimuth_offset.max()) < 1.0
    assert float(ds.range_offset.min()) > -0.7 and float(ds.range_offset.max()) < 3.7
    down, across = read_band(isce / ISCE_OFFSETS, 1), read_band(isce / ISCE_OFFSETS, 2)
    valid = np.isfinite(ds.azimuth_offset.values)
    np.testing.assert_array_equal(down[valid], ds.azimuth_offset.values[valid])
    np.testing.assert_array_equal(across[~valid], -10000.0)
    np.testing.assert_array_equal(read_band(isce / ISCE_SNR)[valid], ds.snr.values[valid])
    np.testing.assert_array_equal(read_band(isce / ISCE_COV, 2)[valid], ds.cov_az.values[valid])
    assert not list(tmp_path.glob(".tmp-*"))


def test_isce_export_reproduces_dense_ampcor_files(tmp_path: Path) -> None:
    """The fixture's own values, exported, give DenseAmpcor's bytes (.bil, .vrt; .xml but its version line)."""
    source = data_path("isce/complex")
    raw = np.fromfile(source / ISCE_OFFSETS, "<f4").reshape(19, 2, 19)
    invalid = raw[:, 0] == -10000
    snr = read_band(source / ISCE_SNR)
    cov = [read_band(source / ISCE_COV, band) for band in (1, 2, 3)]

    def var(values: np.ndarray) -> tuple[tuple[str, str], np.ndarray]:
        return ("line", "sample"), np.where(invalid, np.nan, values).astype(np.float32)

    ds = xr.Dataset(
        {
            "azimuth_offset": var(raw[:, 0]),
            "range_offset": var(raw[:, 1]),
            "snr": var(snr),
            "cov_rg": var(cov[0]),
            "cov_az": var(cov[1]),
            "cov_azrg": var(cov[2]),
        }
    )
    write_isce_offsets(ds, tmp_path)
    for name in (ISCE_OFFSETS, ISCE_SNR, ISCE_COV):
        assert (tmp_path / name).read_bytes() == (source / name).read_bytes(), name
        assert (tmp_path / f"{name}.vrt").read_text() == (source / f"{name}.vrt").read_text(), name
        theirs = (source / f"{name}.xml").read_text().splitlines()
        start = next(i for i, line in enumerate(theirs) if "ISCE_VERSION" in line)
        del theirs[start : start + 3]  # ISCE's own version property
        assert (tmp_path / f"{name}.xml").read_text().splitlines() == theirs, name


def test_npy_and_geotiff_inputs_with_gross_offset(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    shift = (-6.4, 14.3)
    ref, sec = constant_shift_pair((160, 512), shift, gamma=0.8, seed=3)
    np.save(tmp_path / "ref.npy", ref)
    profile = {"driver": "GTiff", "height": 160, "width": 512, "count": 1, "dtype": "complex64"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # radar geometry: no transform
        with rasterio.open(tmp_path / "sec.tif", "w", **profile) as dst:
            dst.write(sec, 1)
    assert open_image(tmp_path / "sec.tif").shape == (160, 512)
    out = tmp_path / "o.zarr"
    images = [str(tmp_path / "ref.npy"), str(tmp_path / "sec.tif")]
    options = ["--gross-offset", "-6,14", "--mode", "complex", "--outlier-mad-k", "0", "--out", str(out)]
    result = runner.invoke(app, ["track", *images, *GRID, *options])
    assert result.exit_code == 0, result.output
    assert "windows valid" in result.stdout
    ds = xr.open_zarr(out, consolidated=False)
    assert ds.attrs["gross_offset_azimuth"] == -6.0
    assert ds.attrs["outlier_mad_k"] == "off"  # --outlier-mad-k 0 turns the neighbour test off
    np.testing.assert_allclose(np.nanmean(ds.range_offset.values), shift[1], atol=0.01)
    np.testing.assert_allclose(np.nanmean(ds.azimuth_offset.values), shift[0], atol=0.01)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"--window": "63x16"}, "window width 63 is not allowed: window sizes must be even"),
        ({"--window": "64by16"}, "--window '64by16' is not WIDTHxHEIGHT"),
        ({"--search": "20x200"}, "but the reference is only 512 x 160"),
        ({"--gross-offset": "1;2"}, "--gross-offset '1;2' is not AZ,RG"),
        ({"--mode": "complex"}, "mode 'complex' needs complex images"),
        ({"--backend": "opencl"}, "backend 'opencl' is not one of"),
        ({"--out": "result.nc"}, "must name a Zarr store ending in .zarr"),
        ({"REF": "missing.npy"}, "input image missing.npy does not exist"),
        ({"SEC": "cropped"}, "is 150 x 512 (lines x samples); co-registered images have the same shape"),
    ],
)
def test_bad_input_is_one_error_line_exit_2_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, str], expected: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ref, sec = constant_shift_pair((160, 512), (0.0, 0.0), seed=1)
    np.save(data / "ref.npy", np.abs(ref))
    np.save(data / "sec.npy", np.abs(sec))
    np.save(data / "cropped.npy", np.abs(sec)[:150])  # a secondary on another grid: not co-registered
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    options = {"--window": "64x16", "--search": "20x8", "--skip": "32x16", "--out": "o.zarr", **change}
    reference = change.get("REF", str(data / "ref.npy"))
    args = ["track", reference, str(data / f"{change.get('SEC', 'sec')}.npy")]
    for name, value in options.items():
        if name not in ("REF", "SEC"):
            args += [name, value]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert expected in lines[0]
    assert list(work.iterdir()) == []
