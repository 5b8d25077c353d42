"""From scenes to acquisitions to pairs.

An *acquisition* is one pass over the area: every slice (frame) of one track and flight direction sensed on one
UTC date (slices of one data-take stay together even across midnight). A *pair* joins two acquisitions of the
same track: consecutive ones, or with ``pairing: network`` each one with several later ones (redundant
measurements of every date, so noise and gaps average out in composites). Pairs never cross tracks. Each pair
gets its time separation and a search range large enough for the fastest expected ice.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from offset_cube.area import parse_area
from offset_cube.config import (
    Engine,
    FlightDirection,
    JobConfig,
    Polarization,
    Swath,
    engine_parameter_problems,
)
from offset_cube.scenes import Scene
from offset_cube.size import Size

log = logging.getLogger(__name__)

DAYS_PER_YEAR = 365.25
#: Slant-range pixel spacing c / (2 f_s) of IW SLCs (f_s = 64.345238 MHz), metres.
SLANT_RANGE_SPACING_M = 2.329562
#: Smallest annotated IW azimuth pixel spacing (IW3, ~13.90 m; IW1 13.96 m), metres.
AZIMUTH_SPACING_M = 13.88
#: Largest incidence angle (degrees) at the far edge of each IW swath; the ground-range pixel
#: (slant spacing / sin θ) is smallest there, so a displacement spans the most pixels.
FAR_INCIDENCE_DEG = {Swath.IW1: 36.9, Swath.IW2: 41.8, Swath.IW3: 46.0}
#: Polar regions, where Sentinel-1 IW acquires HH(+HV) rather than VV(+VH).
POLAR_LATITUDE_DEG = 60.0


class Acquisition(BaseModel):
    """All slices of one pass of one track on one date."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    track: int
    direction: FlightDirection
    date: dt.date
    scenes: tuple[Scene, ...] = Field(min_length=1)

    @property
    def start(self) -> dt.datetime:
        return min(s.start for s in self.scenes)

    @property
    def stop(self) -> dt.datetime:
        return max(s.stop for s in self.scenes)

    @property
    def product_ids(self) -> list[str]:
        return [s.product_id for s in self.scenes]

    @property
    def label(self) -> str:
        return self.date.strftime("%Y%m%d")


class Pair(BaseModel):
    """Two acquisitions of one track; the earlier one is the reference."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference: Acquisition
    secondary: Acquisition
    search_px: Size = Field(description="Half search range (width, height) in pixels.")
    search_widened: bool = Field(False, description="True when max speed needed more than the configured search.")

    @property
    def track(self) -> int:
        return self.reference.track

    @property
    def direction(self) -> FlightDirection:
        return self.reference.direction

    @property
    def dt_days(self) -> float:
        """Time separation of the two acquisitions in days (from the first slices' sensing starts)."""
        return (self.secondary.start - self.reference.start).total_seconds() / 86400.0

    @property
    def mid_time(self) -> dt.datetime:
        return self.reference.start + (self.secondary.start - self.reference.start) / 2

    @property
    def pair_id(self) -> str:
        """Folder and cube-layer id, e.g. ``20180807_20180819_t146``."""
        return f"{self.reference.label}_{self.secondary.label}_t{self.track:03d}"

    @property
    def label(self) -> str:
        """Human label for logs and the Prefect UI, e.g. ``track-146 20180807→20180819``."""
        return f"track-{self.track} {self.reference.label}→{self.secondary.label}"

    @property
    def scenes(self) -> tuple[Scene, ...]:
        return self.reference.scenes + self.secondary.scenes

    def summary(self) -> dict[str, Any]:
        """The pair as the JSON plan shows it."""
        return {
            "track": self.track,
            "direction": self.direction.value,
            "reference_date": self.reference.date.isoformat(),
            "secondary_date": self.secondary.date.isoformat(),
            "dt_days": round(self.dt_days, 4),
            "reference_scenes": self.reference.product_ids,
            "secondary_scenes": self.secondary.product_ids,
            "search": list(self.search_px),
        }


class SkippedPair(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pair: Pair
    reason: str


class Plan(BaseModel):
    """What a run will do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    polarization: Polarization | None
    acquisitions: tuple[Acquisition, ...]
    pairs: tuple[Pair, ...]
    skipped: tuple[SkippedPair, ...] = ()
    already_done: tuple[str, ...] = Field((), description="Pair ids found in the cube and not redone.")
    warnings: tuple[str, ...] = ()

    @property
    def tracks(self) -> list[int]:
        return sorted({a.track for a in self.acquisitions})

    def scenes(self) -> list[Scene]:
        """Every scene needed by the planned pairs, once each, oldest first."""
        found = {s.product_id: s for p in self.pairs for s in p.scenes}
        return sorted(found.values(), key=lambda s: (s.start, s.product_id))

    def notices(self) -> list[str]:
        """What a user should know before the run: the plan's warnings and each skipped pair with its reason
        (the CLI and the flow show the same lines)."""
        return [*self.warnings, *(f"skipping {s.pair.label}: {s.reason}" for s in self.skipped)]

    def summary_line(self) -> str:
        """One line on the plan's size (logs)."""
        return (
            f"plan: {len(self.acquisitions)} acquisition(s) on track(s) {self.tracks}, {len(self.pairs)} pair(s) to "
            f"process, {len(self.already_done)} already in the cube, {len(self.skipped)} skipped"
        )

    def no_pairs_reason(self) -> str:
        """Why there is no pair to process, in one sentence (the CLI and the flow say it the same way)."""
        if not self.acquisitions:
            return "no acquisitions found for this area and date range: no pairs"
        if self.already_done and not self.skipped:
            return f"no new pairs: all {len(self.already_done)} pair(s) are already in the cube"
        if len(self.acquisitions) < 2:
            return "only one acquisition found: a pair needs two dates of one track, so there are no pairs"
        return (
            f"no pairs to process: {len(self.skipped)} skipped, {len(self.already_done)} already in the cube; "
            "each track has a single acquisition or every pair was skipped"
        )


def choose_polarization(job: JobConfig, scenes: Sequence[Scene]) -> Polarization | None:
    """The co-polarisation to process: the job's, else the one most scenes hold (ties: HH if polar, else VV)."""
    if job.polarization is not None:
        return job.polarization
    if not scenes:
        return None
    polar = abs(parse_area(job.area).centroid.y) >= POLAR_LATITUDE_DEG
    preferred, other = (Polarization.HH, Polarization.VV) if polar else (Polarization.VV, Polarization.HH)
    n_pref = sum(preferred in s.polarisations for s in scenes)
    n_other = sum(other in s.polarisations for s in scenes)
    return preferred if n_pref >= n_other else other


def required_search_px(job: JobConfig, dt_days: float) -> Size:
    """Half search range (width, height) that covers ``max_speed × dt`` plus the margin.

    Uses nominal IW geometry: the smallest ground-range pixel of the swaths in use (far edge) and the smallest
    azimuth pixel, so the range is never too small anywhere in the swath.
    """
    displacement_m = job.max_speed_m_per_yr * dt_days / DAYS_PER_YEAR
    swaths = job.swaths or list(Swath)
    far = max(FAR_INCIDENCE_DEG[s] for s in swaths)
    ground_range_m = SLANT_RANGE_SPACING_M / math.sin(math.radians(far))
    margin = job.tracking.search_margin_px
    width = math.ceil(displacement_m / ground_range_m) + margin
    height = math.ceil(displacement_m / AZIMUTH_SPACING_M) + margin
    return Size(max(width, 1), max(height, 1))


def search_window(job: JobConfig, dt_days: float) -> tuple[Size, bool]:
    """Search range for a pair ``dt_days`` apart, and whether it had to be widened beyond the configured one."""
    required = required_search_px(job, dt_days)
    minimum = 8 if job.engine is Engine.ISCE2 else 1  # ISCE2's 16-pixel zoom window needs 2*search+1 >= 16
    configured = job.tracking.search
    if configured is None:
        return Size(max(required.width, minimum), max(required.height, minimum)), False
    scale = dt_days / job.tracking.search_reference_days
    scaled = Size(*(max(math.ceil(v * scale - 1e-9), minimum) for v in configured))
    final = Size(max(scaled.width, required.width), max(scaled.height, required.height))
    return final, final != scaled


def make_acquisitions(scenes: Iterable[Scene]) -> list[Acquisition]:
    """Group scenes by (track, direction, UTC date); slices of one data-take stay together across midnight."""
    by_key: dict[tuple[int, FlightDirection, dt.date], list[Scene]] = defaultdict(list)
    datatake_key: dict[tuple[str, str], tuple[int, FlightDirection, dt.date]] = {}
    for scene in sorted(scenes, key=lambda s: (s.start, s.product_id)):
        take = (scene.mission, scene.name.datatake)
        key = datatake_key.get(take) or (scene.relative_orbit, scene.flight_direction, scene.date)
        datatake_key.setdefault(take, key)
        by_key[key].append(scene)
    acquisitions = [
        Acquisition(track=track, direction=direction, date=date, scenes=tuple(group))
        for (track, direction, date), group in by_key.items()
    ]
    return sorted(acquisitions, key=lambda a: (a.track, a.direction.value, a.date))


def plan_pairs(job: JobConfig, scenes: Sequence[Scene], existing: Collection[str] = ()) -> Plan:
    """Plan the pairs of each track, minus those whose ids are in ``existing``.

    ``pairing: consecutive`` joins each date with the next one; ``network`` with up to ``max_neighbours`` later
    dates within ``max_gap_days``. A consecutive pair beyond the gap is reported as skipped; a further network
    neighbour beyond it is not formed at all (it was never meant to be).
    """
    warnings: list[str] = []
    polarization = choose_polarization(job, scenes)
    usable = [s for s in scenes if polarization is None or polarization in s.polarisations]
    if len(usable) < len(scenes):
        dropped = sorted(s.product_id for s in scenes if s not in usable)
        warnings.append(
            f"{len(dropped)} scene(s) lack {polarization} and are not used: {', '.join(dropped[:5])}"
            + (" ..." if len(dropped) > 5 else "")
        )
    acquisitions = make_acquisitions(usable)
    by_track: dict[tuple[int, FlightDirection], list[Acquisition]] = defaultdict(list)
    for acq in acquisitions:
        by_track[(acq.track, acq.direction)].append(acq)

    pairs: list[Pair] = []
    skipped: list[SkippedPair] = []
    done: list[str] = []
    for _key, track_acqs in sorted(by_track.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
        gaps = [(b.start - a.start).total_seconds() / 86400 for a, b in itertools.pairwise(track_acqs)]
        typical = statistics.median(gaps) if gaps else 0.0
        for i, ref in enumerate(track_acqs):
            for k, sec in enumerate(track_acqs[i + 1 : i + 1 + job.neighbours], start=1):
                dt_days = (sec.start - ref.start).total_seconds() / 86400
                if k > 1 and job.max_gap_days is not None and dt_days > job.max_gap_days + 0.5:
                    break  # a network neighbour beyond the gap is simply not formed
                outcome = _judge_pair(job, ref, sec, existing, typical if k == 1 else 0.0)
                if isinstance(outcome, SkippedPair):
                    skipped.append(outcome)
                elif isinstance(outcome, str):
                    done.append(outcome)
                else:
                    pairs.append(outcome[0])
                    warnings.extend(outcome[1])
    pairs.sort(key=lambda p: (p.track, p.direction.value, p.reference.date, p.secondary.date))
    return Plan(
        polarization=polarization,
        acquisitions=tuple(acquisitions),
        pairs=tuple(pairs),
        skipped=tuple(skipped),
        already_done=tuple(done),
        warnings=tuple(warnings),
    )


def _judge_pair(
    job: JobConfig, ref: Acquisition, sec: Acquisition, existing: Collection[str], typical_gap_days: float
) -> tuple[Pair, list[str]] | SkippedPair | str:
    """The pair of ``ref`` and ``sec`` with its warnings, or why it is not run: skipped, or its id if already done.

    ``typical_gap_days`` (0: no check) warns about a consecutive pair across an unusually long gap.
    """
    dt_days = (sec.start - ref.start).total_seconds() / 86400
    search, widened = search_window(job, dt_days)
    pair = Pair(reference=ref, secondary=sec, search_px=search, search_widened=widened)
    if pair.pair_id in existing:
        return pair.pair_id
    if job.max_gap_days is not None and dt_days > job.max_gap_days + 0.5:
        return SkippedPair(pair=pair, reason=f"{dt_days:.0f} days > max_gap_days {job.max_gap_days}")
    problems = engine_parameter_problems(job.engine, job.tracking.window, search)
    if problems:
        return SkippedPair(pair=pair, reason=f"needs search {search}: " + "; ".join(problems))
    warnings: list[str] = []
    if widened:
        configured = job.tracking.search
        warnings.append(
            f"{pair.label}: search widened to {search} px so that "
            f"{job.max_speed_m_per_yr:g} m/yr over {dt_days:.0f} days fits "
            f"(configured {configured} per {job.tracking.search_reference_days:g} days)"
            if configured
            else f"{pair.label}: search widened to {search} px"
        )
    if typical_gap_days and dt_days > 2 * typical_gap_days + 0.5:
        warnings.append(
            f"{pair.label}: {dt_days:.0f}-day gap (typical {typical_gap_days:.0f} days on track {pair.track}); "
            "expect lower coherence"
        )
    return pair, warnings
