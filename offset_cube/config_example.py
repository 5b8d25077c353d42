"""The commented job template (``examples/job.yaml``), generated from the job model so it never drifts from it."""

from __future__ import annotations

import textwrap
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from offset_cube.config import JobConfig, SearchSource

HEADER = """\
# offset-cube job template: every field of the job model with its description and default.
# Generated from offset_cube/config.py by `offset-cube config --example` (or `make example`); do not edit by hand.
# Fields marked REQUIRED have no default (an example value is shown). Sizes are [width, height] =
# [range samples, azimuth lines] (or "WIDTHxHEIGHT" text). Relative paths are relative to the directory you run
# offset-cube from.
"""
WIDTH = 116


def example_yaml() -> str:
    """The template's text."""
    return HEADER + "".join(_model_lines(JobConfig, indent=""))


def _model_lines(model: type[BaseModel], indent: str) -> list[str]:
    lines: list[str] = []
    for name, info in model.model_fields.items():
        section = _section_model(info)
        lines.append("" if indent else "\n")
        if section is not None:
            lines += _comment(section.__doc__ or "", indent)
            lines.append(f"{indent}{name}:\n")
            lines += _model_lines(section, indent + "  ")
            continue
        required = info.is_required()
        description = ("REQUIRED. " if required else "") + (info.description or "")
        lines += _comment(description, indent)
        value = info.examples[0] if required and info.examples else info.get_default(call_default_factory=True)
        lines.append(f"{indent}{name}: {_scalar(value)}\n")
    return lines


def _section_model(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _comment(text: str, indent: str) -> list[str]:
    text = " ".join(text.split())
    return [f"{indent}# {line}\n" for line in textwrap.wrap(text, WIDTH - len(indent))] if text else []


def _scalar(value: Any) -> str:
    if value is PydanticUndefined or value is None:
        return "null"
    if isinstance(value, SearchSource):
        value = str(value)
    plain = to_jsonable_python(value)
    return (
        str(yaml.safe_dump(plain, default_flow_style=True, allow_unicode=True, width=1000))
        .strip()
        .removesuffix("\n...")
        .strip()
    )
