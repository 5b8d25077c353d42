"""Job config: YAML loading, validation messages, repairs, engine constraints."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from offset_cube.config import Engine, JobConfig, load_job, utc_today
from offset_cube.errors import ConfigError
from tests.conftest import ROOT

AREA = "POLYGON((75.0 38.2, 75.3 38.2, 75.3 38.4, 75.0 38.4, 75.0 38.2))"


def job(**fields: object) -> JobConfig:
    return load_job(None, {"area": AREA, "start": "2020-01-01", **fields})


def test_shirase_example_reproduces_the_seed_setup() -> None:
    shirase = load_job(ROOT / "examples" / "shirase.yaml")
    assert shirase.polarization == "HH"
    assert shirase.tracking.window == (256, 64)
    assert shirase.tracking.skip == (44, 8)
    assert shirase.tracking.search == (30, 10)
    assert shirase.tracking.search_reference_days == 12
    assert shirase.engine is Engine.ISCE2
    assert shirase.area.startswith("POLYGON ((38.0336 -69.7358")


def test_template_example_loads_with_documented_defaults() -> None:
    template = load_job(ROOT / "examples" / "job.yaml")
    defaults = job()
    assert template.tracking == defaults.tracking
    assert template.grid == defaults.grid
    assert template.product == defaults.product
    assert template.dem == defaults.dem
    assert template.isce2 == defaults.isce2
    assert template.cleanup == defaults.cleanup
    assert template.storage.cube_path == ROOT / "examples" / "offset-cube-output" / "cube.zarr"  # beside the file


def test_paths_in_a_job_file_are_relative_to_its_folder_and_flags_to_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.cli.jobs import build_job

    folder = tmp_path / "jobs"
    (folder / "catalog").mkdir(parents=True)
    (folder / "area.geojson").write_text(
        json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]})
    )
    (folder / "dem.tif").write_bytes(b"")  # only its existence is checked when the job is read
    config = folder / "job.yaml"
    config.write_text(
        "area: area.geojson\nstart: 2020-01-01\nsearch: local:catalog\n"
        "storage: {out: out, orbit_cache: ../orbits}\ndem: dem.tif\n"
    )
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "mine").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    from_file = load_job(config)
    assert from_file.storage.out == folder / "out" and from_file.storage.orbit_dir.resolve() == tmp_path / "orbits"
    assert str(from_file.search) == f"local:{folder / 'catalog'}" and from_file.dem.path == folder / "dem.tif"
    assert from_file.area.startswith("POLYGON ((0 0")
    with_flags = build_job(config, search="local:mine", out=Path("results"))
    assert str(with_flags.search) == f"local:{elsewhere / 'mine'}" and with_flags.storage.out == elsewhere / "results"
    assert with_flags.storage.orbit_dir.resolve() == tmp_path / "orbits"
    tiles = load_job(config, {"dem": {"tiles_url": "mirror/glo30", "geoid_url": "mirror/geoid.tif"}})
    assert tiles.dem.tiles_url == (folder / "mirror" / "glo30").as_uri()
    assert tiles.dem.geoid_url == (folder / "mirror" / "geoid.tif").as_uri()
    with pytest.raises(ConfigError, match="'ftp://host/x' is not an http"):
        load_job(config, {"dem": {"tiles_url": "ftp://host/x"}})


def test_job_round_trips_through_json_as_a_flow_parameter() -> None:
    original = job(track=146, direction="descending", swaths="iw1 iw2", tracking={"window": "128x32"})
    again = JobConfig.model_validate(json.loads(original.model_dump_json()))
    assert again == original
    assert again.track == [146]
    assert again.swaths == ["IW1", "IW2"]
    assert again.tracking.window == (128, 32)


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = job(storage={"out": "results", "scene_cache": "~/scenes"})
    assert loaded.storage.out == tmp_path / "results"
    assert loaded.storage.scene_dir == Path.home() / "scenes"
    assert loaded.storage.pairs_dir == tmp_path / "results" / "pairs"


def test_end_defaults_to_today() -> None:
    assert job().end_date == utc_today()


def test_unknown_yaml_field_names_the_field_and_the_valid_ones(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(f"area: '{AREA}'\nstart: 2020-01-01\ntracking:\n  windw: [64, 16]\n")
    with pytest.raises(ConfigError) as info:
        load_job(path)
    message = str(info.value)
    assert "unknown field 'tracking.windw'" in message
    assert "window" in message and str(path) in message


def test_yaml_syntax_error_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("area: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_job(path)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"area": "POLYGON((0 0, 1 1"}, "not valid WKT"),
        ({"area": "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"}, "Self-intersection"),
        ({"area": "glacier.geojson"}, "is neither WKT nor an existing GeoJSON file"),
        ({"area": "POLYGON((0 0, 200 0, 200 1, 0 1, 0 0))"}, "outside lon"),
        ({"start": "2014-10-02"}, "before Sentinel-1's first data (2014-10-03)"),
        ({"start": (utc_today() + dt.timedelta(days=1)).isoformat()}, "after today"),
        ({"end": "2019-12-31"}, "end 2019-12-31 is before start 2020-01-01"),
        ({"end": (utc_today() + dt.timedelta(days=3)).isoformat()}, "is after today"),
        ({"engine": "isce2", "tracking": {"window": [63, 16]}}, "window width must be even"),
        ({"engine": "isce2", "tracking": {"window": [64, 16], "search": [20, 4]}}, "must be >= 8"),
        ({"engine": "isce2", "tracking": {"window": [64, 16], "search": [20, 32]}}, "must be < 2 x window height"),
        ({"engine": "isce2", "tracking": {"mode": "complex"}}, "topsApp's dense offsets always correlate amplitudes"),
        ({"tracking": {"oversampling": 24}}, "power of two"),
        ({"tracking": {"window": "64by16"}}, "WIDTHxHEIGHT"),
        ({"search": "ftp:somewhere"}, "not one of 'asf', 'file:PATH', 'local:FOLDER'"),
        ({"search": "local:/no/such/folder"}, "does not exist"),
        ({"track": 176}, "less than or equal to 175"),
        ({"direction": "sideways"}, "direction"),
    ],
)
def test_bad_input_gives_one_clear_error(fields: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        job(**fields)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_a_point_in_wkt_is_rejected_as_not_a_polygon() -> None:
    with pytest.raises(ConfigError, match="is a Point; it must be a Polygon"):
        job(area="POINT (10 10)")


def test_clockwise_polygon_is_repaired_counter_clockwise() -> None:
    clockwise = "POLYGON((0 0, 0 1, 1 1, 1 0, 0 0))"
    import shapely

    repaired = shapely.from_wkt(job(area=clockwise).area)
    assert repaired.exterior.is_ccw
    assert repaired.area == pytest.approx(1.0)


def test_geojson_file_area_is_read_and_normalised(tmp_path: Path) -> None:
    path = tmp_path / "glacier.geojson"
    ring = [[10.0, 60.0], [10.0, 60.5], [11.0, 60.5], [11.0, 60.0], [10.0, 60.0]]  # clockwise
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
                ],
            }
        )
    )
    loaded = job(area=str(path))
    assert loaded.area.startswith("POLYGON ((")
    import shapely

    assert shapely.from_wkt(loaded.area).exterior.is_ccw


def test_isce2_accepts_the_shirase_parameters() -> None:
    accepted = job(engine="isce2", tracking={"window": [256, 64], "search": [30, 10], "skip": [44, 8]})
    assert accepted.engine is Engine.ISCE2


def test_complex_mode_is_for_the_builtin_engine_only() -> None:
    assert job(tracking={"mode": "complex"}).tracking.mode.value == "complex"
    assert job(engine="isce2", tracking={"mode": "amplitude"}).engine is Engine.ISCE2
