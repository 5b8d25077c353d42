"""Jobs on ``dem: auto``, their GLO-30 tiles and geoid served locally: the bundled Shirase example (70°S, beyond
topsApp's SRTM) plans and dry-runs without a user DEM; an ISCE2 pair's DEM covers every burst topsApp keeps."""

from __future__ import annotations

import ast
import datetime as dt
import json
import math
from pathlib import Path

import rasterio
import yaml
from lxml import etree
from typer.testing import CliRunner

from flows.cli import app
from offset_cube.area import parse_area
from offset_cube.dem import dem_box, job_dem
from offset_cube.dem.glo30 import Box
from offset_cube.geometry.acquisition import open_date
from offset_cube.isce2.bursts import burst_boxes, kept_by_isce
from offset_cube.isce2.dem import dem_extent
from offset_cube.isce2.render import read_render_record, render_pair_inputs
from offset_cube.isce2.xml import TOPSAPP_XML
from offset_cube.isce_raster import read_isce_header
from tests.conftest import ROOT
from tests.fake_dem import GEOID_NAME, dem_server, write_source
from tests.isce2_support import BC_REFERENCE, BC_SECONDARY, bc_inputs, isce2_job

runner = CliRunner()
SHIRASE_FOOTPRINT = [[36.5, -71.2], [41.8, -71.0], [41.2, -69.0], [36.9, -69.2], [36.5, -71.2]]


def shirase_export(folder: Path, dates: int = 3) -> Path:
    """An ASF GeoJSON export of ``dates`` HH+HV scenes 12 days apart on one descending track over Shirase."""
    features = []
    first = dt.datetime(2019, 3, 2, 0, 21, 10, tzinfo=dt.UTC)
    for i in range(dates):
        when = first + dt.timedelta(days=12 * i)
        stop, orbit = when + dt.timedelta(seconds=25), 26200 + 175 * i
        product = f"S1A_IW_SLC__1SDH_{when:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_{orbit:06d}_{orbit * 7:06X}_{i:04X}"
        props = {
            "sceneName": product,
            "fileID": f"{product}-SLC",
            "startTime": when.isoformat(),
            "stopTime": stop.isoformat(),
            "pathNumber": 81,
            "flightDirection": "DESCENDING",
            "url": f"https://datapool.asf.alaska.edu/SLC/SA/{product}.zip",
            "bytes": 4_000_000_000,
            "md5sum": "0" * 32,
        }
        geometry = {"type": "Polygon", "coordinates": [SHIRASE_FOOTPRINT]}
        features.append({"type": "Feature", "properties": props, "geometry": geometry})
    export = folder / "shirase.geojson"
    export.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return export


def test_shirase_example_plans_and_dry_runs_without_a_user_dem(tmp_path: Path) -> None:
    shipped = yaml.safe_load((ROOT / "examples" / "shirase.yaml").read_text())
    assert "dem" not in shipped  # the example relies on the default, dem: auto
    export = shirase_export(tmp_path)
    area = parse_area(shipped["area"])
    write_source(tmp_path / "bucket", dem_box(area, 10_000))
    with dem_server(tmp_path / "bucket") as (url, state):
        # The same job, its DEM source pointed at the local stand-in of the public bucket.
        job = {**shipped, "dem": {"tiles_url": url, "geoid_url": f"{url}/{GEOID_NAME}"}}
        job["storage"] = {"out": str(tmp_path / "out")}
        config = tmp_path / "shirase.yaml"
        config.write_text(yaml.safe_dump(job))
        flags = ["-c", str(config), "--search", f"file:{export}"]

        planned = runner.invoke(app, ["plan", *flags, "--json"])
        assert planned.exit_code == 0, planned.output
        assert len(json.loads(planned.stdout)) == 2
        assert state.requests == []  # planning needs no terrain

        dry = runner.invoke(app, ["run", *flags, "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert {p.split("/")[0] for p in state.tile_requests()} >= {
            "Copernicus_DSM_COG_10_S71_00_E038_00_DEM",
            "Copernicus_DSM_COG_10_S70_00_E039_00_DEM",
        }
    folders = [Path(line) for line in dry.stdout.splitlines()]
    assert len(folders) == 2
    comp = etree.parse(str(folders[0] / "topsApp.xml")).getroot().find("component")
    assert comp is not None
    dem = Path({p.get("name"): p.text for p in comp.findall("property")}["demFilename"] or "")
    assert dem.parent == tmp_path / "out" / "dem" and dem.suffix == ".dem"
    header = read_isce_header(dem)  # a geographic ISCE raster covering the area, converted once
    assert header.y_start > area.bounds[3] and header.x_start < area.bounds[0]
    assert not (tmp_path / "out" / "scenes").exists()  # nothing downloaded


def test_isce2_dem_auto_covers_every_burst_topsapp_keeps_on_both_dates(tmp_path: Path) -> None:
    """topsApp's topo runs over whole bursts: with `dem: auto` the pair's DEM spans ISCE's boxes of the bursts it
    keeps on both dates (whole degrees), not only the area plus dem.margin_m."""
    write_source(tmp_path / "bucket", Box(-130.0, 51.0, -126.0, 53.0))
    with dem_server(tmp_path / "bucket") as (url, _):
        dem = {"tiles_url": url, "geoid_url": f"{url}/{GEOID_NAME}", "cache": str(tmp_path / "cache")}
        job = isce2_job(tmp_path, dem)
        inputs = bc_inputs(job)
        pair_dir = render_pair_inputs(inputs, job)
        area_dem = job_dem(job)
    assert area_dem is not None
    record = read_render_record(pair_dir)
    assert (
        record.dem is not None
        and f'<property name="demFilename">{record.dem}</property>' in (pair_dir / TOPSAPP_XML).read_text()
    )
    extent = dem_extent(Path(record.dem))
    # ISCE's own boxes of the bursts kept by the rendered region, on each date (computed here from the annotations).
    boxes = []
    for safe in (BC_REFERENCE, BC_SECONDARY):
        with open_date([safe], [], "vv") as date:
            boxes += kept_by_isce(burst_boxes(date, "vv", ["IW2"]), _region(pair_dir))
    assert len(boxes) >= 2 * 3  # bursts 3-5 of IW2 on both dates (test_isce2_bursts)
    south, north = min(b.box[0] for b in boxes), max(b.box[1] for b in boxes)
    west, east = min(b.box[2] for b in boxes), max(b.box[3] for b in boxes)
    assert extent.covers((south, north, west, east))
    # whole-degree bounds (sample centres half a posting inside them)
    assert extent.south < math.floor(south) + 0.01 and extent.north > math.ceil(north) - 0.01
    assert extent.west < math.floor(west) + 0.01 and extent.east > math.ceil(east) - 0.01
    # the area's own DEM (area + dem.margin_m) would not have covered them
    with rasterio.open(area_dem) as dataset:
        a_west, a_south, a_east, a_north = dataset.bounds
    assert not (a_west <= west and a_east >= east and a_south <= south and a_north >= north)


def _region(pair_dir: Path) -> tuple[float, float, float, float]:
    """The rendered topsApp.xml's region of interest (S, N, W, E)."""
    comp = etree.parse(str(pair_dir / "topsApp.xml")).getroot().find("component")
    assert comp is not None
    text = {p.get("name"): p.text for p in comp.findall("property")}["region of interest"] or ""
    south, north, west, east = ast.literal_eval(text)
    return float(south), float(north), float(west), float(east)
