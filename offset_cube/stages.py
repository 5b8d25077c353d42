"""Small typed records passed between flow stages (paths and metadata, never arrays)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from offset_cube.planning import Pair

OrbitType = Literal["POEORB", "RESORB", "annotation"]


class OrbitFile(BaseModel):
    """The orbit chosen for one scene. ``path`` is None when the annotation's state vectors are used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: str
    orbit_type: OrbitType
    path: Path | None = None
    deferred: bool = Field(False, description="No acceptable orbit yet (e.g. POEORB not published): retry later.")
    note: str = ""


class PairInputs(BaseModel):
    """Everything an engine needs for one pair: local SAFE paths and orbit files per date."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pair: Pair
    pair_dir: Path
    reference_safes: tuple[Path, ...]
    secondary_safes: tuple[Path, ...]
    reference_orbits: tuple[OrbitFile, ...]
    secondary_orbits: tuple[OrbitFile, ...]

    @property
    def orbit_types(self) -> list[str]:
        return [o.orbit_type for o in (*self.reference_orbits, *self.secondary_orbits)]


class PairOutcome(BaseModel):
    """How one pair ended, for the run summary and the plan artifact."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pair_id: str
    label: str
    status: Literal["completed", "failed", "deferred", "skipped", "already-done"]
    product: Path | None = None
    message: str = ""
