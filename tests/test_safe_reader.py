"""The SAFE reader on every real product in tests/data/safe/ (annotations from 2014 to 2025).

Expected values were read by hand from the annotation XML with grep; line numbers are given where helpful.
"""

from __future__ import annotations

import datetime as dt
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from offset_cube.errors import SafeError
from offset_cube.safe.annotation import parse_annotation
from offset_cube.safe.product import SafeProduct
from tests.conftest import data_path

SAFE_DIR = data_path("safe")
PRODUCTS = sorted(
    [*SAFE_DIR.glob("s1-reader/*.zip"), *SAFE_DIR.glob("hyp3-isce2/*/*.SAFE"), *SAFE_DIR.glob("xarray-sentinel/*.SAFE")]
)
PAMIR = SAFE_DIR / "hyp3-isce2/multi_burst/S1A_IW_SLC__1SSV_20220814T125820_20220814T125829_044549_055128_F814.SAFE"


def _zip(key: str) -> Path:
    return next(SAFE_DIR.glob(f"s1-reader/*{key}.zip"))


def test_every_product_is_found() -> None:
    assert len(PRODUCTS) >= 17, PRODUCTS


@pytest.mark.parametrize("path", PRODUCTS, ids=lambda p: p.name[17:32] + p.suffix)
def test_every_annotation_parses_consistently(path: Path) -> None:
    with SafeProduct(path) as product:
        assert product.manifest.mode == "IW"
        for pol in product.polarisations:
            for swath in product.swaths(pol):
                ann = product.annotation(swath, pol)
                assert (ann.swath, ann.polarisation) == (swath, pol)
                assert len(ann.orbit.times.seconds) >= 4
                assert np.all(np.diff(ann.orbit.times.seconds) > 0)
                assert ann.fm_rates and ann.dc_estimates
                assert 2.0e-3 < ann.azimuth_time_interval_s < 2.1e-3
                if not ann.bursts:  # placeholder swaths of burst-assembled products
                    continue
                assert ann.number_of_lines == len(ann.bursts) * ann.lines_per_burst
                first, last = ann.bursts[0].valid_lines
                assert 0 < first < last < ann.lines_per_burst
                s_first, s_last = ann.bursts[0].valid_samples
                assert 0 <= s_first < s_last < ann.samples_per_burst
                times = [b.azimuth_time for b in ann.bursts]
                assert times == sorted(times)
                assert abs((times[0] - ann.first_line_time).total_seconds()) < 1e-5
                assert len(ann.geolocation.latitude) > 0


def test_pamir_values_match_the_xml() -> None:
    """F814 IW2 VV: values copied from the annotation XML."""
    with SafeProduct(PAMIR) as product:
        ann = product.annotation("IW2", "VV")
    assert ann.pass_direction == "ASCENDING"
    assert ann.platform_heading_deg == pytest.approx(-13.3101122688203)
    assert ann.range_sampling_rate_hz == pytest.approx(6.434523812571428e07)
    assert ann.radar_frequency_hz == pytest.approx(5.405000454334350e09)
    assert ann.azimuth_steering_rate_deg_s == pytest.approx(0.9798633249999998)
    assert ann.slant_range_time_s == pytest.approx(5.644566224867575e-03)
    assert ann.azimuth_time_interval_s == pytest.approx(2.055556299999998e-03)
    assert (ann.lines_per_burst, ann.samples_per_burst, ann.number_of_lines) == (1506, 25389, 6024)
    assert ann.azimuth_bandwidth_hz == 313.0 and ann.azimuth_window_coefficient == 0.75
    assert ann.range_bandwidth_hz == pytest.approx(4.83e7)
    burst = ann.bursts[0]
    assert burst.azimuth_time == dt.datetime(2022, 8, 14, 12, 58, 20, 834579, tzinfo=dt.UTC)
    assert (burst.byte_offset, burst.burst_id, burst.absolute_burst_id) == (48350, 56069, 95686113)
    assert burst.first_valid_sample[23] == -1 and burst.first_valid_sample[24] == 447
    assert burst.valid_lines[0] == 24
    fm = ann.fm_rates[0]
    assert fm.t0 == pytest.approx(5.644566224867575e-03)
    assert fm.coefficients == pytest.approx((-2197.235008826622, 401621.7204612197, -65347013.31601943))
    assert ann.dc_estimates[0].coefficients == pytest.approx((-8.292362, -12166.85, 4035649.0))
    assert ann.geolocation.latitude[0] == pytest.approx(37.92090533537733)
    assert ann.geolocation.height[0] == pytest.approx(4570.000181540847)
    assert len(ann.orbit.times.seconds) == 16
    assert ann.orbit.positions[0, 0] == pytest.approx(1.963465114575e06)


def test_ipf2_fm_rate_written_as_c0_c1_c2() -> None:
    """2014 products (IPF 2.x) write c0/c1/c2 elements instead of azimuthFmRatePolynomial (XML l.1279-1285)."""
    with SafeProduct(_zip("07B5")) as product:
        ann = product.annotation("IW1", "VV")
    assert ann.fm_rates[0].coefficients == pytest.approx((-2335.805211999914, 449077.9635910711, -78414491.56238678))
    assert ann.bursts[0].burst_id is None  # burstId appeared with IPF 3.40


def test_equator_crossing_product() -> None:
    """D6E2 crosses the ascending node: the manifest gives relative orbit 15 at start (16 at stop) and the
    annotated burst ids run on without a jump; the annotated ANX is almost one orbit before the data."""
    with SafeProduct(_zip("D6E2")) as product:
        assert product.manifest.relative_orbit == 15
        ann = product.annotation("IW1", "VV")
    ids = [b.burst_id for b in ann.bursts]
    assert ids == list(range(32216, 32226))
    assert ann.bursts[0].absolute_burst_id == 97917584
    assert ann.ascending_node_time is not None
    assert 5800 < (ann.first_line_time - ann.ascending_node_time).total_seconds() < 5925


def test_burst_id_labelling_edge_cases() -> None:
    """F396 and 6E2D: IW1's absolute burst ids are one lower than IW2's for the same relative id, and 6E2D's
    IW3 has one extra burst at its start (ids as annotated, s1-reader #117)."""
    with SafeProduct(_zip("F396")) as product:
        iw1, iw2 = product.annotation("IW1", "VV"), product.annotation("IW2", "VV")
    assert iw1.bursts[0].burst_id == iw2.bursts[0].burst_id == 107509
    assert (iw1.bursts[0].absolute_burst_id, iw2.bursts[0].absolute_burst_id) == (96113440, 96113441)
    with SafeProduct(_zip("6E2D")) as product:
        assert product.manifest.relative_orbit == 175
        iw3 = product.annotation("IW3", "VV")
    assert [b.burst_id for b in iw3.bursts][:2] == [373742, 373743]


def test_zip_with_an_extra_folder_level_and_empty_tiffs() -> None:
    """7768 nests the SAFE in safe/ and ships 0-byte TIFFs: annotations read, pixel reads fail naming the file."""
    path = _zip("7768")
    with SafeProduct(path) as product:
        assert product.swaths("VV") == ["IW1", "IW2", "IW3"]
        assert product.polarisations == ["VH", "VV"]
        ann = product.annotation("IW3", "VV")
        assert ann.platform_heading_deg == pytest.approx(-166.7214781833035)
        assert ann.azimuth_steering_rate_deg_s == pytest.approx(1.397440818)
        assert ann.slant_range_time_s == pytest.approx(6.015320711278467e-03)
        with pytest.raises(SafeError, match=r"7768\.zip.*0 bytes"):
            product.read_window("IW3", "VV", (0, 10), (0, 10))


def test_macosx_junk_is_ignored() -> None:
    with SafeProduct(_zip("BA76")) as product:
        assert product.swaths("VV") == ["IW2"]
        assert product.annotation("IW2", "VV").bursts[0].burst_id == 151227


def test_windowed_read_of_the_sparse_tiff() -> None:
    """F396's IW2 TIFF is a 15010 x 24499 sparse all-zero file inside the zip: a window costs only its tiles."""
    with SafeProduct(_zip("F396")) as product:
        data = product.read_window("IW2", "VV", (14000, 14050), (24000, 24499))
        assert data.shape == (50, 499) and data.dtype == np.complex64
        assert not np.any(data)
        with pytest.raises(SafeError, match="outside the 15010x24499 image"):
            product.read_window("IW2", "VV", (15000, 15020), (0, 10))


def test_a_measurement_tiff_is_opened_once_per_product(monkeypatch: pytest.MonkeyPatch) -> None:
    """Burst after burst reads one open GDAL handle (a zipped member is a deflate stream: every fresh open would
    decompress it again from the start); closing the product closes it."""
    import rasterio

    opened: list[Any] = []
    real_open = rasterio.open

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        opened.append(real_open(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(rasterio, "open", counting_open)
    with SafeProduct(_zip("F396")) as product:
        first = product.read_window("IW2", "VV", (14000, 14050), (24000, 24499))
        second = product.read_window("IW2", "VV", (100, 120), (0, 64))
        with pytest.raises(SafeError, match="outside the 15010x24499 image"):
            product.read_window("IW2", "VV", (15000, 15020), (0, 10))
    assert first.shape == (50, 499) and second.shape == (20, 64)
    assert len(opened) == 1 and opened[0].closed


def _rewritten(tmp_path: Path, name: str, replace: dict[str, str]) -> Path:
    """A copy of the Pamir SAFE folder under another name with manifest text replaced."""
    target = tmp_path / f"{name}.SAFE"
    shutil.copytree(PAMIR, target)
    manifest = target / "manifest.safe"
    text = manifest.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    manifest.chmod(0o644)
    manifest.write_text(text)
    return target


@pytest.mark.parametrize(
    ("kind", "replace"),
    [
        ("EW", {"<s1sarl1:mode>IW</s1sarl1:mode>": "<s1sarl1:mode>EW</s1sarl1:mode>"}),
        ("GRD", {"<s1sarl1:productType>SLC</s1sarl1:productType>": "<s1sarl1:productType>GRD</s1sarl1:productType>"}),
    ],
)
def test_non_iw_slc_products_are_refused_naming_the_file(tmp_path: Path, kind: str, replace: dict[str, str]) -> None:
    path = _rewritten(tmp_path, f"S1A_{kind}", replace)
    with pytest.raises(SafeError, match=rf"{path}.* is a (EW SLC|IW GRD) product"):
        SafeProduct(path)


def test_missing_polarisation_names_the_file() -> None:
    with SafeProduct(PAMIR) as product, pytest.raises(SafeError, match=rf"{PAMIR.name} has no HH data; it holds VV"):
        product.require_polarisation("HH")


def test_zipped_folder_reads_like_the_folder(tmp_path: Path) -> None:
    zipped = tmp_path / f"{PAMIR.stem}.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for file in PAMIR.rglob("*"):
            if file.is_file():
                zf.write(file, f"{PAMIR.name}/{file.relative_to(PAMIR)}")
    with SafeProduct(zipped) as a, SafeProduct(PAMIR) as b:
        assert a.annotation("IW2", "VV").bursts[2].azimuth_time == b.annotation("IW2", "VV").bursts[2].azimuth_time
        assert a.product_id == b.product_id == PAMIR.stem


def test_malformed_annotation_names_the_source() -> None:
    with pytest.raises(SafeError, match="bad.xml: annotation is not valid XML"):
        parse_annotation(b"<product><adsHeader>", source="bad.xml")
    with pytest.raises(
        SafeError, match="bad.xml: annotation lacks imageAnnotation/imageInformation/productFirstLineUtcTime"
    ):
        parse_annotation(b"<product/>", source="bad.xml")
