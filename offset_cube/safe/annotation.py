"""Sentinel-1 IW SLC annotation XML (one swath × polarisation) → typed records.

Element paths and meanings follow the Sentinel-1 Product Specification's XSD (S1-RS-MDA-52-7441; the schemas
bundled with bopen/xarray-sentinel). Times are kept as timezone-aware UTC datetimes (µs, as written)
for single instants and as float64 seconds since an explicit epoch for arrays, never float32 (a millisecond of
error is metres along track). Older IPF (2.x) products write the azimuth FM rate as separate ``c0``/``c1``/``c2``
elements; newer ones as ``azimuthFmRatePolynomial``; both are read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from lxml import etree
from shapely.geometry import MultiPoint, Polygon
from shapely.geometry.base import BaseGeometry

from offset_cube.errors import SafeError

#: Speed of light in vacuum, m/s.
SPEED_OF_LIGHT = 299_792_458.0


@dataclass(frozen=True)
class TimeSeries:
    """Times of an array quantity as float64 seconds since ``epoch`` (UTC)."""

    epoch: dt.datetime
    seconds: np.ndarray

    def datetimes(self) -> list[dt.datetime]:
        return [self.epoch + dt.timedelta(seconds=float(s)) for s in self.seconds]


@dataclass(frozen=True)
class StateVectors:
    """Earth-fixed orbit state vectors: positions (m) and velocities (m/s) at ``times``."""

    times: TimeSeries
    positions: np.ndarray  # (N, 3)
    velocities: np.ndarray  # (N, 3)


@dataclass(frozen=True)
class RangePolynomial:
    """``c0 + c1 (τ − t0) + c2 (τ − t0)² …`` of two-way slant-range time τ, valid around ``azimuth_time``."""

    azimuth_time: dt.datetime
    t0: float
    coefficients: tuple[float, ...]

    def __call__(self, tau: np.ndarray | float) -> np.ndarray:
        x = np.asarray(tau, dtype=np.float64) - self.t0
        return np.asarray(np.polynomial.polynomial.polyval(x, np.asarray(self.coefficients)))


@dataclass(frozen=True)
class Burst:
    """One burst of a swath file. Valid samples are inclusive bounds; −1 marks an invalid line."""

    index: int
    azimuth_time: dt.datetime
    azimuth_anx_time: float | None
    sensing_time: dt.datetime | None
    byte_offset: int
    first_valid_sample: np.ndarray = field(repr=False)
    last_valid_sample: np.ndarray = field(repr=False)
    burst_id: int | None = None
    absolute_burst_id: int | None = None

    @cached_property
    def valid_lines(self) -> tuple[int, int]:
        """First and last valid line within the burst (inclusive); (0, −1) when none is valid."""
        valid = np.flatnonzero(self.first_valid_sample >= 0)
        if valid.size == 0:
            return 0, -1
        return int(valid[0]), int(valid[-1])

    @cached_property
    def valid_samples(self) -> tuple[int, int]:
        """Samples valid on every valid line (inclusive), as ISCE2 (``Sensor/TOPS/Sentinel1.py``) and s1-reader
        take them."""
        first, last = self.valid_lines
        if last < first:
            return 0, -1
        fvs = self.first_valid_sample[first : last + 1]
        lvs = self.last_valid_sample[first : last + 1]
        return int(fvs.max()), int(lvs.min())


@dataclass(frozen=True)
class GeolocationGrid:
    """The annotation's tie-point grid. Heights are WGS84 ellipsoidal (the XSD says "above sea level", but
    only ellipsoidal heights reproduce the grid: tests/test_geometry.py); angles are in degrees."""

    azimuth_time: TimeSeries
    slant_range_time: np.ndarray
    line: np.ndarray
    pixel: np.ndarray
    latitude: np.ndarray
    longitude: np.ndarray
    height: np.ndarray
    incidence_angle: np.ndarray
    elevation_angle: np.ndarray


@dataclass(frozen=True)
class SwathAnnotation:
    """Everything the built-in engine and the simulator need from one annotation file."""

    source: str
    mission: str
    product_type: str
    mode: str
    swath: str
    polarisation: str
    start: dt.datetime
    stop: dt.datetime
    absolute_orbit: int
    image_number: str
    pass_direction: str
    platform_heading_deg: float
    range_sampling_rate_hz: float
    radar_frequency_hz: float
    azimuth_steering_rate_deg_s: float
    first_line_time: dt.datetime
    last_line_time: dt.datetime
    ascending_node_time: dt.datetime | None
    slant_range_time_s: float
    range_pixel_spacing_m: float
    azimuth_pixel_spacing_m: float
    azimuth_time_interval_s: float
    number_of_samples: int
    number_of_lines: int
    incidence_angle_mid_deg: float | None
    azimuth_bandwidth_hz: float
    azimuth_window_coefficient: float
    range_bandwidth_hz: float
    range_window_coefficient: float
    orbit_source: str | None
    terrain_height_m: float | None
    lines_per_burst: int
    samples_per_burst: int
    bursts: tuple[Burst, ...]
    orbit: StateVectors
    fm_rates: tuple[RangePolynomial, ...]
    dc_estimates: tuple[RangePolynomial, ...]
    geolocation: GeolocationGrid

    @property
    def wavelength_m(self) -> float:
        return SPEED_OF_LIGHT / self.radar_frequency_hz

    @property
    def footprint(self) -> BaseGeometry:
        """Convex hull (lon/lat) of the geolocation grid: the swath's ground coverage; empty without a grid."""
        grid = self.geolocation
        if grid.latitude.size == 0:
            return Polygon()  # placeholder swath of a burst-assembled product
        return MultiPoint(np.column_stack([grid.longitude, grid.latitude])).convex_hull

    def nearest(self, polynomials: tuple[RangePolynomial, ...], when: dt.datetime) -> RangePolynomial:
        """The entry nearest in time to ``when`` (select by time, not list index, as ISCE2 and s1-reader do)."""
        if not polynomials:
            raise SafeError(f"{self.source}: no azimuth FM-rate / Doppler-centroid estimates in the annotation")
        return min(polynomials, key=lambda p: abs((p.azimuth_time - when).total_seconds()))


def parse_annotation(xml: bytes, source: str) -> SwathAnnotation:
    """Parse one annotation file's bytes; ``source`` names it in errors."""
    try:
        root = etree.fromstring(xml)
    except etree.XMLSyntaxError as err:
        raise SafeError(f"{source}: annotation is not valid XML ({err})") from err
    reader = _Reader(root, source)
    try:
        return reader.annotation()
    except SafeError:
        raise
    except (ValueError, IndexError) as err:
        raise SafeError(f"{source}: malformed annotation value ({err})") from err


class _Reader:
    """XPath helpers that raise :class:`SafeError` naming the file and the missing element."""

    def __init__(self, root: etree._Element, source: str) -> None:
        self.root = root
        self.source = source

    def text(self, path: str, node: etree._Element | None = None) -> str:
        value = (self.root if node is None else node).findtext(path)
        if value is None or not value.strip():
            raise SafeError(f"{self.source}: annotation lacks {path}")
        return value.strip()

    def optional(self, path: str, node: etree._Element | None = None) -> str | None:
        value = (self.root if node is None else node).findtext(path)
        return value.strip() if value is not None and value.strip() else None

    def number(self, path: str, node: etree._Element | None = None) -> float:
        return float(self.text(path, node))

    def time(self, path: str, node: etree._Element | None = None) -> dt.datetime:
        return parse_time(self.text(path, node))

    def annotation(self) -> SwathAnnotation:
        first_line = self.time("imageAnnotation/imageInformation/productFirstLineUtcTime")
        anx = self.optional("imageAnnotation/imageInformation/ascendingNodeTime")
        terrain = [
            float(v.text or "nan") for v in self.root.findall("generalAnnotation/terrainHeightList/terrainHeight/value")
        ]
        swath_params = "imageAnnotation/processingInformation/swathProcParamsList/swathProcParams"
        incidence = self.optional("imageAnnotation/imageInformation/incidenceAngleMidSwath")
        return SwathAnnotation(
            source=self.source,
            mission=self.text("adsHeader/missionId"),
            product_type=self.text("adsHeader/productType"),
            mode=self.text("adsHeader/mode"),
            swath=self.text("adsHeader/swath"),
            polarisation=self.text("adsHeader/polarisation").upper(),
            start=self.time("adsHeader/startTime"),
            stop=self.time("adsHeader/stopTime"),
            absolute_orbit=int(self.text("adsHeader/absoluteOrbitNumber")),
            image_number=self.text("adsHeader/imageNumber"),
            pass_direction=self.text("generalAnnotation/productInformation/pass").upper(),
            platform_heading_deg=self.number("generalAnnotation/productInformation/platformHeading"),
            range_sampling_rate_hz=self.number("generalAnnotation/productInformation/rangeSamplingRate"),
            radar_frequency_hz=self.number("generalAnnotation/productInformation/radarFrequency"),
            azimuth_steering_rate_deg_s=self.number("generalAnnotation/productInformation/azimuthSteeringRate"),
            first_line_time=first_line,
            last_line_time=self.time("imageAnnotation/imageInformation/productLastLineUtcTime"),
            ascending_node_time=parse_time(anx) if anx else None,
            slant_range_time_s=self.number("imageAnnotation/imageInformation/slantRangeTime"),
            range_pixel_spacing_m=self.number("imageAnnotation/imageInformation/rangePixelSpacing"),
            azimuth_pixel_spacing_m=self.number("imageAnnotation/imageInformation/azimuthPixelSpacing"),
            azimuth_time_interval_s=self.number("imageAnnotation/imageInformation/azimuthTimeInterval"),
            number_of_samples=int(self.text("imageAnnotation/imageInformation/numberOfSamples")),
            number_of_lines=int(self.text("imageAnnotation/imageInformation/numberOfLines")),
            incidence_angle_mid_deg=float(incidence) if incidence else None,
            azimuth_bandwidth_hz=self.number(f"{swath_params}/azimuthProcessing/processingBandwidth"),
            azimuth_window_coefficient=self.number(f"{swath_params}/azimuthProcessing/windowCoefficient"),
            range_bandwidth_hz=self.number(f"{swath_params}/rangeProcessing/processingBandwidth"),
            range_window_coefficient=self.number(f"{swath_params}/rangeProcessing/windowCoefficient"),
            orbit_source=self.optional("imageAnnotation/processingInformation/orbitSource"),
            terrain_height_m=float(np.mean(terrain)) if terrain else None,
            lines_per_burst=int(self.text("swathTiming/linesPerBurst")),
            samples_per_burst=int(self.text("swathTiming/samplesPerBurst")),
            bursts=self.bursts(),
            orbit=self.orbit(first_line),
            fm_rates=self.fm_rates(),
            dc_estimates=self.dc_estimates(),
            geolocation=self.geolocation(first_line),
        )

    def bursts(self) -> tuple[Burst, ...]:
        bursts = []
        for index, node in enumerate(self.root.findall("swathTiming/burstList/burst")):
            anx = self.optional("azimuthAnxTime", node)
            sensing = self.optional("sensingTime", node)
            burst_id_node = node.find("burstId")
            burst_id = absolute = None
            if burst_id_node is not None and (burst_id_node.text or "").strip():
                burst_id = int(burst_id_node.text or "")
                absolute_text = burst_id_node.get("absolute")
                absolute = int(absolute_text) if absolute_text else None
            bursts.append(
                Burst(
                    index=index,
                    azimuth_time=self.time("azimuthTime", node),
                    azimuth_anx_time=float(anx) if anx else None,
                    sensing_time=parse_time(sensing) if sensing else None,
                    byte_offset=int(self.text("byteOffset", node)),
                    first_valid_sample=_ints(self.text("firstValidSample", node)),
                    last_valid_sample=_ints(self.text("lastValidSample", node)),
                    burst_id=burst_id,
                    absolute_burst_id=absolute,
                )
            )
        return tuple(bursts)

    def orbit(self, epoch_near: dt.datetime) -> StateVectors:
        nodes = self.root.findall("generalAnnotation/orbitList/orbit")
        if len(nodes) < 4:
            raise SafeError(f"{self.source}: annotation holds {len(nodes)} orbit state vectors; at least 4 needed")
        times = [self.time("time", n) for n in nodes]
        epoch = epoch_near.replace(microsecond=0)
        positions = np.array([[self.number(f"position/{a}", n) for a in "xyz"] for n in nodes])
        velocities = np.array([[self.number(f"velocity/{a}", n) for a in "xyz"] for n in nodes])
        return StateVectors(TimeSeries(epoch, _seconds(times, epoch)), positions, velocities)

    def fm_rates(self) -> tuple[RangePolynomial, ...]:
        rates = []
        for node in self.root.findall("generalAnnotation/azimuthFmRateList/azimuthFmRate"):
            poly = self.optional("azimuthFmRatePolynomial", node)
            if poly is not None:
                coefficients = tuple(float(v) for v in poly.split())
            else:  # IPF 2.x: separate c0, c1, c2 (ISCE2 Sentinel1.py l.682-689)
                coefficients = tuple(self.number(c, node) for c in ("c0", "c1", "c2"))
            rates.append(RangePolynomial(self.time("azimuthTime", node), self.number("t0", node), coefficients))
        return tuple(rates)

    def dc_estimates(self) -> tuple[RangePolynomial, ...]:
        estimates = []
        for node in self.root.findall("dopplerCentroid/dcEstimateList/dcEstimate"):
            coefficients = tuple(float(v) for v in self.text("dataDcPolynomial", node).split())
            estimates.append(RangePolynomial(self.time("azimuthTime", node), self.number("t0", node), coefficients))
        return tuple(estimates)

    def geolocation(self, epoch_near: dt.datetime) -> GeolocationGrid:
        # Placeholder swaths of burst-assembled products hold no bursts and an empty grid (count="0").
        nodes = self.root.findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
        epoch = epoch_near.replace(microsecond=0)

        def column(name: str) -> np.ndarray:
            return np.array([self.number(name, n) for n in nodes])

        return GeolocationGrid(
            azimuth_time=TimeSeries(epoch, _seconds([self.time("azimuthTime", n) for n in nodes], epoch)),
            slant_range_time=column("slantRangeTime"),
            line=column("line"),
            pixel=column("pixel"),
            latitude=column("latitude"),
            longitude=column("longitude"),
            height=column("height"),
            incidence_angle=column("incidenceAngle"),
            elevation_angle=column("elevationAngle"),
        )


def parse_time(text: str) -> dt.datetime:
    """An annotation time (``2022-08-14T12:58:20.834579``, UTC, optional ``Z``) as an aware datetime."""
    return dt.datetime.fromisoformat(text.strip().removesuffix("Z")).replace(tzinfo=dt.UTC)


def format_time(value: dt.datetime) -> str:
    """The annotation's own time format (µs, no zone)."""
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _seconds(times: list[dt.datetime], epoch: dt.datetime) -> np.ndarray:
    return np.array([(t - epoch).total_seconds() for t in times], dtype=np.float64)


def _ints(text: str) -> np.ndarray:
    return np.array([int(v) for v in text.split()], dtype=np.int64)
