"""examples/job.yaml is generated from the job model: the committed file is what the generator writes, and it loads."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from offset_cube.config import JobConfig, load_job
from offset_cube.config_example import example_yaml
from tests.conftest import ROOT

TEMPLATE = ROOT / "examples" / "job.yaml"


def test_committed_template_is_the_generated_one() -> None:
    assert TEMPLATE.read_text(encoding="utf-8") == example_yaml(), "run `make example` and commit examples/job.yaml"


def test_template_names_every_field_and_loads_to_the_defaults() -> None:
    text = example_yaml()
    for name, info in JobConfig.model_fields.items():
        assert f"\n{name}:" in text, name
        assert info.description is None or " ".join(info.description.split())[:40] in " ".join(
            line.lstrip("# ") for line in text.splitlines()
        ), name
    job = load_job(TEMPLATE)
    defaults = JobConfig.model_validate({"area": job.area, "start": job.start})
    # a relative path in a job file is relative to the file's folder; the default's, to the current one
    assert job.storage.out == TEMPLATE.parent / defaults.storage.out.relative_to(Path.cwd())
    assert job.model_copy(update={"storage": defaults.storage}) == defaults


def test_cli_prints_the_template() -> None:
    result = CliRunner().invoke(app, ["config", "--example"])
    assert result.exit_code == 0 and result.output == example_yaml()
    assert CliRunner().invoke(app, ["config"]).exit_code == 2
