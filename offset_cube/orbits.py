"""Choose, fetch and validate the Sentinel-1 orbit file (``.EOF``) for a scene.

Rule (as sentineleof's ``eof/_select_orbit.py`` and ISCE2's ``fetchOrbit.py``): same mission; precise (POEORB)
first, restituted (RESORB) only as a fallback; validity covering the scene's start − 60 s to stop + 60 s; among
those the newest creation time. Sources, in order: the orbit cache folder(s) (users may pre-fill them), ASF's public
anonymous bucket ``s1-orbits`` (listed the way S3 lists objects, as sentineleof does, but per mission), then
Copernicus Data Space (only with credentials). A file enters the cache only after it parses, names the right mission
and type, holds at least 10 state vectors and has vectors over the whole scene window; it is written atomically.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import threading
import time
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import requests
from lxml import etree

from offset_cube.atomic import atomic_path
from offset_cube.credentials import Credentials, keeps_secrets_out
from offset_cube.eof import EofName, OrbitKind, OrbitStateVectors, read_eof
from offset_cube.errors import OrbitError, TransientOrbitError
from offset_cube.scenes import Scene
from offset_cube.stages import OrbitFile

log = logging.getLogger(__name__)

#: Orbit data needed before the scene start and after its stop (sentineleof's margins, ``eof/_select_orbit.py``).
MARGIN_S = 60.0
#: Fewer state vectors than this cannot support the interpolation the engines do (ISCE2 uses 4+ around a time).
MIN_STATE_VECTORS = 10
#: POEORBs appear about 20 days after acquisition (the creation date in their names); used only to explain a deferral.
POEORB_LATENCY_DAYS = 21

ASF_ORBIT_BUCKET = "https://s1-orbits.s3.amazonaws.com"
CDSE_CATALOGUE = "https://catalogue.dataspace.copernicus.eu/odata/v1/Products"
CDSE_TOKEN = "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"
CDSE_DOWNLOAD = "https://zipper.dataspace.copernicus.eu/odata/v1/Products"
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_MAX_LIST_PAGES = 1000


class OrbitSource(Protocol):
    """A remote place that lists orbit files and hands out their bytes."""

    label: str

    def candidates(self, mission: str, kind: OrbitKind, start: dt.datetime, stop: dt.datetime) -> list[EofName]:
        """Names of files of ``mission`` and ``kind`` that may cover ``start``..``stop``."""
        ...

    def fetch(self, name: EofName) -> bytes:
        """The content of the file ``name``."""
        ...


# --------------------------------------------------------------------------------------------------- rule


def rank_candidates(
    names: Iterable[EofName],
    mission: str,
    kind: OrbitKind,
    start: dt.datetime,
    stop: dt.datetime,
    margin_s: float = MARGIN_S,
) -> list[EofName]:
    """Files of ``mission`` and ``kind`` whose validity covers the scene with the margin, newest created first."""
    usable = {n.name: n for n in names if n.mission == mission and n.orbit_type == kind}
    covering = [n for n in usable.values() if n.covers(start, stop, margin_s)]
    return sorted(covering, key=lambda n: (n.created, n.name), reverse=True)


def validate_orbit_file(
    path: Path, expected: EofName, start: dt.datetime, stop: dt.datetime, margin_s: float = MARGIN_S
) -> OrbitStateVectors:
    """Parse ``path`` and check it is what ``expected`` names and that it has state vectors over the scene."""
    orbit = read_eof(path)  # rejects missing, empty (0 bytes), non-XML and malformed files
    problems = []
    if orbit.mission != expected.mission:
        problems.append(f"it holds {orbit.mission} data but its name says {expected.mission}")
    if orbit.orbit_type != expected.orbit_type:
        problems.append(f"it is a {orbit.orbit_type} but its name says {expected.orbit_type}")
    if len(orbit.times) < MIN_STATE_VECTORS:
        problems.append(f"it holds {len(orbit.times)} state vectors (at least {MIN_STATE_VECTORS} are needed)")
    elif not orbit.spans(start, stop, margin_s):
        problems.append(
            f"its state vectors run {orbit.first_time:%Y-%m-%dT%H:%M:%S}..{orbit.last_time:%Y-%m-%dT%H:%M:%S}, "
            f"not {margin_s:g} s beyond the scene {start:%Y-%m-%dT%H:%M:%S}..{stop:%Y-%m-%dT%H:%M:%S}"
        )
    if problems:
        raise OrbitError(f"orbit file {path.name} is unusable: " + "; ".join(problems))
    return orbit


def cached_candidates(folders: Sequence[Path]) -> list[tuple[EofName, Path]]:
    """Orbit files in ``folders`` (not recursive) whose names parse; the first folder wins a duplicate name."""
    found: dict[str, tuple[EofName, Path]] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.EOF")):
            try:
                name = EofName.parse(path.name)
            except OrbitError:
                log.debug("ignoring %s: not a Sentinel-1 orbit file name", path)
                continue
            found.setdefault(name.name, (name, path))
    return list(found.values())


# --------------------------------------------------------------------------------------------------- search


def find_orbit(
    scene: Scene,
    kind: OrbitKind,
    cache_dirs: Sequence[Path],
    sources: Sequence[OrbitSource],
    margin_s: float = MARGIN_S,
) -> Path | None:
    """The best valid ``kind`` orbit for ``scene``: from the cache, else fetched into ``cache_dirs[0]``.

    Returns None when every source answered and none has one. When nothing was found and a source failed,
    raises :class:`TransientOrbitError` (unreachable: retry later) or :class:`OrbitError`, so that a missing
    orbit is never concluded from a failure.
    """
    mission, start, stop = scene.mission, scene.start, scene.stop
    cached = cached_candidates(cache_dirs)
    paths = {n.name: p for n, p in cached}
    for name in rank_candidates((n for n, _ in cached), mission, kind, start, stop, margin_s):
        try:
            validate_orbit_file(paths[name.name], name, start, stop, margin_s)
        except OrbitError as err:
            log.warning("%s: skipping cached %s: %s", scene.product_id, paths[name.name], err)
            continue
        return paths[name.name]
    failures: list[OrbitError] = []
    for source in sources:
        try:
            path = _fetch_from(source, scene, kind, cache_dirs[0], margin_s)
        except OrbitError as err:
            log.warning("%s: %s", scene.product_id, err)
            failures.append(err)
            continue
        if path is not None:
            return path
    if failures:
        message = f"{scene.product_id}: no {kind} found, and orbit sources failed: " + "; ".join(map(str, failures))
        if any(isinstance(err, TransientOrbitError) for err in failures):
            raise TransientOrbitError(message)
        raise OrbitError(message)
    return None


def _fetch_from(source: OrbitSource, scene: Scene, kind: OrbitKind, cache_dir: Path, margin_s: float) -> Path | None:
    """Fetch the best valid candidate of ``source`` into ``cache_dir``; None when it has none."""
    names = source.candidates(scene.mission, kind, scene.start, scene.stop)
    for name in rank_candidates(names, scene.mission, kind, scene.start, scene.stop, margin_s):
        data = source.fetch(name)
        try:
            return store_orbit(data, name, cache_dir, scene.start, scene.stop, margin_s)
        except OrbitError as err:
            log.warning("%s: %s file rejected: %s", scene.product_id, source.label, err)
    return None


def store_orbit(
    data: bytes, name: EofName, cache_dir: Path, start: dt.datetime, stop: dt.datetime, margin_s: float = MARGIN_S
) -> Path:
    """Write ``data`` as ``cache_dir/<name>`` only if it validates (atomically: never a partial file)."""
    target = cache_dir / name.name
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
        try:
            validate_orbit_file(tmp, name, start, stop, margin_s)
        except OrbitError as err:
            raise OrbitError(str(err).replace(tmp.name, name.name)) from err
    return target


@keeps_secrets_out(OrbitError)  # Copernicus Data Space sources hold a login
def choose_orbit(
    scene: Scene,
    cache_dirs: Sequence[Path],
    sources: Sequence[OrbitSource],
    *,
    allow_resorb: bool,
    allow_annotation: bool,
) -> OrbitFile:
    """The orbit to use for ``scene``: POEORB, else RESORB (if allowed), else annotation (if allowed), else defer."""
    window = f"{scene.start:%Y-%m-%dT%H:%M:%S}..{scene.stop:%Y-%m-%dT%H:%M:%S}"
    missing = f"no precise orbit (POEORB) of {scene.mission} covers {window} ± {MARGIN_S:g} s yet"
    try:
        precise = find_orbit(scene, "POEORB", cache_dirs, sources)
        if precise is not None:
            return OrbitFile(product_id=scene.product_id, orbit_type="POEORB", path=precise)
        if allow_resorb:
            restituted = find_orbit(scene, "RESORB", cache_dirs, sources)
            if restituted is not None:
                note = f"restituted orbit (RESORB) used: {missing}"
                return OrbitFile(product_id=scene.product_id, orbit_type="RESORB", path=restituted, note=note)
    except TransientOrbitError as err:
        if not allow_annotation:
            raise
        # The job accepts annotation orbits; an unreachable orbit service is no reason to stop the pair.
        note = f"annotation state vectors used: orbit sources could not be asked ({err})"
        return OrbitFile(product_id=scene.product_id, orbit_type="annotation", note=note)
    if allow_annotation:
        note = f"annotation state vectors used: {missing}" + ("" if not allow_resorb else " and no RESORB either")
        return OrbitFile(product_id=scene.product_id, orbit_type="annotation", note=note)
    hint = (
        f"POEORBs are published about {POEORB_LATENCY_DAYS} days after acquisition"
        if not allow_resorb
        else "no RESORB either"
    )
    suggestion = "" if allow_resorb else "; set orbits.allow_resorb: true to use a restituted orbit now"
    return OrbitFile(
        product_id=scene.product_id,
        orbit_type="POEORB",
        deferred=True,
        note=f"{missing} ({hint}){suggestion}",
    )


# --------------------------------------------------------------------------------------------------- ASF


class AsfOrbitBucket:
    """ASF's public orbit bucket (AWS open data, no login), listed per type and mission with S3 ListObjects."""

    label = "ASF orbit bucket"

    def __init__(
        self,
        base_url: str = ASF_ORBIT_BUCKET,
        *,
        timeout_s: float = 60.0,
        listing_ttl_s: float = 600.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.listing_ttl_s = listing_ttl_s
        self.session = session or requests.Session()
        self._listings: dict[tuple[str, str], tuple[float, list[EofName]]] = {}
        self._lock = threading.Lock()

    def candidates(self, mission: str, kind: OrbitKind, start: dt.datetime, stop: dt.datetime) -> list[EofName]:
        with self._lock:  # tasks of one process share a listing rather than each listing the bucket
            key = (kind, mission)
            listed = self._listings.get(key)
            if listed is None or time.monotonic() - listed[0] > self.listing_ttl_s:
                listed = (time.monotonic(), self._list(f"AUX_{kind}/{mission}_"))
                self._listings[key] = listed
            return listed[1]

    def fetch(self, name: EofName) -> bytes:
        url = f"{self.base_url}/AUX_{name.orbit_type}/{name.name}"
        return _get(self.session, url, self.timeout_s, self.label).content

    def _list(self, prefix: str) -> list[EofName]:
        """Every object name under ``prefix``, following S3's ``marker`` paging; empty objects are skipped."""
        names: list[EofName] = []
        marker = ""
        for _ in range(_MAX_LIST_PAGES):
            params = {"prefix": prefix, **({"marker": marker} if marker else {})}
            page = _get(self.session, f"{self.base_url}/", self.timeout_s, self.label, params=params)
            keys, truncated, next_marker = _parse_listing(page.content, self.base_url)
            for key, size in keys:
                if size == 0:
                    log.debug("%s: skipping empty object %s", self.label, key)
                    continue
                try:
                    names.append(EofName.parse(key))
                except OrbitError:
                    log.debug("%s: skipping %s (not an orbit file name)", self.label, key)
            if not truncated:
                return names
            if not next_marker or next_marker == marker:
                raise OrbitError(f"{self.label} listing of {prefix} does not advance past {marker!r}")
            marker = next_marker
        raise OrbitError(f"{self.label} listing of {prefix} exceeded {_MAX_LIST_PAGES} pages")


def _parse_listing(content: bytes, where: str) -> tuple[list[tuple[str, int]], bool, str]:
    """(key, size) pairs, whether more pages follow, and the marker of the next page."""
    try:
        root = etree.fromstring(content)
    except etree.XMLSyntaxError as err:
        raise TransientOrbitError(f"{where} returned a listing that is not XML ({err})") from err
    keys = []
    for item in root.iter(f"{_S3_NS}Contents"):
        key = item.findtext(f"{_S3_NS}Key") or ""
        size = item.findtext(f"{_S3_NS}Size") or "0"
        keys.append((key, int(size) if size.isdigit() else 0))
    truncated = (root.findtext(f"{_S3_NS}IsTruncated") or "false").strip().lower() == "true"
    next_marker = root.findtext(f"{_S3_NS}NextMarker") or (keys[-1][0] if keys else "")
    return keys, truncated, next_marker


def _get(
    session: requests.Session,
    url: str,
    timeout_s: float,
    label: str,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """GET with a timeout; network failures, 429 and 5xx become transient errors, other refusals OrbitError."""
    try:
        response = session.get(url, params=params, headers=headers, timeout=(timeout_s, timeout_s))
    except (requests.ConnectionError, requests.Timeout) as err:
        raise TransientOrbitError(f"{label} unreachable ({type(err).__name__} for {url})") from err
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientOrbitError(f"{label} answered HTTP {response.status_code} for {url}")
    if not response.ok:
        raise OrbitError(f"{label} answered HTTP {response.status_code} for {url}")
    return response


# --------------------------------------------------------------------------------------------------- CDSE


class CdseOrbitCatalogue:
    """Copernicus Data Space: an open OData catalogue search, downloads with a token from a login."""

    label = "Copernicus Data Space"

    def __init__(
        self,
        credentials: Credentials,
        *,
        catalogue_url: str = CDSE_CATALOGUE,
        token_url: str = CDSE_TOKEN,
        download_url: str = CDSE_DOWNLOAD,
        timeout_s: float = 60.0,
        session: requests.Session | None = None,
    ) -> None:
        self.credentials = credentials
        self.catalogue_url = catalogue_url
        self.token_url = token_url
        self.download_url = download_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self._ids: dict[str, str] = {}
        self._token: str | None = None

    def candidates(self, mission: str, kind: OrbitKind, start: dt.datetime, stop: dt.datetime) -> list[EofName]:
        margin = dt.timedelta(seconds=MARGIN_S)
        stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
        query = (
            f"startswith(Name,'{mission}') and contains(Name,'AUX_{kind}') "
            f"and ContentDate/Start lt '{(start - margin).strftime(stamp)}' "
            f"and ContentDate/End gt '{(stop + margin).strftime(stamp)}'"
        )
        params = {"$filter": query, "$orderby": "ContentDate/Start desc", "$top": "20"}
        response = _get(self.session, self.catalogue_url, self.timeout_s, self.label, params=params)
        names = []
        for product in _json(response, self.label).get("value", []):
            try:
                name = EofName.parse(str(product["Name"]))
            except (KeyError, OrbitError):
                continue
            self._ids[name.name] = str(product.get("Id", ""))
            names.append(name)
        return names

    def fetch(self, name: EofName) -> bytes:
        product_id = self._ids.get(name.name)
        if not product_id:
            raise OrbitError(f"{self.label}: {name.name} was not found by a catalogue search")
        headers = {"Authorization": f"Bearer {self._access_token()}"}
        url = f"{self.download_url}({product_id})/$value"
        return _unzip_eof(_get(self.session, url, self.timeout_s, self.label, headers=headers).content, name)

    def _access_token(self) -> str:
        if self._token is None:
            creds = self.credentials
            if not creds.username or creds.password is None:
                raise OrbitError(f"{self.label} needs a username and password ({creds.source} holds a token only)")
            form = {
                "client_id": "cdse-public",
                "grant_type": "password",
                "username": creds.username,
                "password": creds.password.get_secret_value(),
            }
            try:
                response = self.session.post(self.token_url, data=form, timeout=(self.timeout_s, self.timeout_s))
            except (requests.ConnectionError, requests.Timeout) as err:
                raise TransientOrbitError(f"{self.label} login unreachable ({type(err).__name__})") from err
            if response.status_code in (400, 401, 403):
                raise OrbitError(f"{self.label} refused the login from {creds.source} (HTTP {response.status_code})")
            if not response.ok:
                raise TransientOrbitError(f"{self.label} login answered HTTP {response.status_code}")
            token = _json(response, self.label).get("access_token")
            if not token:
                raise OrbitError(f"{self.label} login reply holds no access_token")
            self._token = str(token)
        return self._token


def _json(response: requests.Response, label: str) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError as err:
        raise TransientOrbitError(f"{label} returned a reply that is not JSON") from err
    if not isinstance(value, dict):
        raise OrbitError(f"{label} returned unexpected JSON ({type(value).__name__})")
    return value


def _unzip_eof(data: bytes, name: EofName) -> bytes:
    """The ``.EOF`` inside ``data`` when it is a zip, else ``data`` itself."""
    if not data.startswith(b"PK\x03\x04"):
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.namelist() if m.upper().endswith(".EOF")]
            if members:
                return archive.read(members[0])
    except zipfile.BadZipFile as err:
        raise OrbitError(f"{name.name}: download is a damaged zip") from err
    raise OrbitError(f"{name.name}: downloaded zip holds no .EOF file")
