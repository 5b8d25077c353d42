"""Jobs on ``dem: auto`` through the command line: the bundled Shirase example (70°S, beyond topsApp's SRTM)
plans and dry-runs without a user DEM, its GLO-30 tiles and geoid served locally."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import yaml
from lxml import etree
from typer.testing import CliRunner

from flows.cli import app
from offset_cube.area import parse_area
from offset_cube.dem import dem_box
from offset_cube.isce_raster import read_isce_header
from tests.conftest import ROOT
from tests.fake_dem import GEOID_NAME, dem_server, write_source

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
