"""Scene files: verify local SAFE products; download ASF products with asf_search and verify them.

asf_search's ``download_url`` streams straight to the final name with no timeout, checks neither size nor md5,
and skips an existing file forever (asf_search 14.1 ``asf_search/download/download.py``). Here each scene is fetched
under a per-scene file lock to ``<zip>.part`` through that same function (with a session that has a socket
timeout and sends Earthdata credentials only to the login host), checked against the search metadata (byte
count, md5, SAFE structure), and renamed into place. The md5 is remembered in a ``<zip>.md5`` sidecar with the
file's size and mtime, so a cached file verifies next time without being read again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import asf_search as asf
import requests
from requests.auth import HTTPBasicAuth, _basic_auth_str

from offset_cube.atomic import file_lock, fsync_file, write_text_atomic
from offset_cube.burst_safe import assemble_safe, read_burst_metadata
from offset_cube.credentials import EDL_HOST, Credentials, keeps_secrets_out
from offset_cube.errors import AuthenticationError, DownloadError, SafeError, TransientDownloadError
from offset_cube.planning import Plan
from offset_cube.progress import ProgressCallback
from offset_cube.safe.archive import UNPACKED_DIR_NAME, SafeArchive, unpack_folder
from offset_cube.scenes import Burst, Scene

log = logging.getLogger(__name__)

#: Every zip file starts with a local file header (PKWARE APPNOTE §4.3.7).
ZIP_MAGIC = b"PK\x03\x04"
_HASH_BLOCK = 8 * 1024 * 1024
_LOCK_DIR = ".locks"


# --------------------------------------------------------------------------------------------------- session


class EarthdataSession(asf.ASFSession):  # type: ignore[misc]  # asf_search ships no type information
    """asf_search's session with a socket timeout, byte counting, and Earthdata credentials.

    A login is sent as HTTP basic auth only on the redirect to the Earthdata Login host (as ``requests`` does for
    ``.netrc`` entries); a token is sent as ``Authorization: Bearer``, which ASFSession keeps across redirects
    between ASF and Earthdata hosts and drops elsewhere (S3).
    """

    def __init__(
        self,
        credentials: Credentials | None,
        *,
        timeout_s: float = 120.0,
        edl_host: str = EDL_HOST,
        limits: TransferLimits | None = None,
    ) -> None:
        super().__init__()
        self.credentials = credentials
        self.timeout_s = timeout_s
        self.edl_host = edl_host
        self.limits = limits or TransferLimits()
        self.on_bytes: ProgressCallback | None = None
        self._streams: list[requests.Response] = []
        self._guards: list[TransferGuard] = []
        if credentials is not None and credentials.token is not None:
            self.headers["Authorization"] = f"Bearer {credentials.token.get_secret_value()}"

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        with self._without_netrc():
            return super().prepare_request(request)  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def _without_netrc(self) -> Iterator[None]:
        """``requests`` applies ``.netrc`` to every host when ``trust_env`` is set (a ``default`` line to any
        host at all); credentials here come only from :attr:`credentials`. Proxies from the environment still
        apply: ``request`` merges them outside this block."""
        trust: bool = getattr(self, "trust_env", True)
        self.trust_env = False
        try:
            yield
        finally:
            self.trust_env = trust

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            # asf_search passes no timeout: without one a stalled server blocks the download forever.
            kwargs["timeout"] = (self.timeout_s, self.timeout_s)
        response: requests.Response = super().request(method, url, *args, **kwargs)
        if kwargs.get("stream"):
            self._streams.append(response)
            if 200 <= response.status_code < 300:  # a body is coming (not a redirect or an error page)
                guard = TransferGuard(self.limits, url, response)
                self._guards.append(guard)
                _count_bytes(response, guard.received, self.on_bytes)
        return response

    def close_streams(self) -> None:
        """Close streamed responses (asf_search leaves a failed transfer's connection open); stop their guards."""
        while self._guards:
            self._guards.pop().stop()
        while self._streams:
            self._streams.pop().close()

    def stall_reason(self) -> str | None:
        """Why a guard ended a transfer of this session (deadline or rate), if one did."""
        return next((g.reason for g in self._guards if g.reason), None)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        with self._without_netrc():
            super().rebuild_auth(prepared_request, response)
        creds = self.credentials
        if creds is None or not creds.username or creds.password is None:
            return
        login = HTTPBasicAuth(creds.username, creds.password.get_secret_value())
        if urlparse(prepared_request.url).hostname == self.edl_host:
            prepared_request.prepare_auth(login)
        elif prepared_request.headers.get("Authorization") == _basic_auth_str(login.username, login.password):
            # ASFSession keeps Authorization between ASF and Earthdata hosts (for tokens); a login stays with EDL.
            del prepared_request.headers["Authorization"]


def _count_bytes(response: requests.Response, count: Callable[[int], None], on_bytes: ProgressCallback | None) -> None:
    """Make ``response.iter_content`` (what asf_search reads) report the running byte count."""
    original = response.iter_content
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None

    def counting(*args: Any, **kwargs: Any) -> Iterator[Any]:
        done = 0
        for chunk in original(*args, **kwargs):
            done += len(chunk)
            count(done)
            if on_bytes is not None:
                on_bytes(done, total)
            yield chunk

    response.iter_content = counting  # type: ignore[method-assign]


@dataclass(frozen=True)
class TransferLimits:
    """An overall deadline for one transfer and the lowest acceptable rate over a sliding window.

    The socket timeout alone never ends a server that sends a byte now and then (each read returns in time).
    """

    deadline_s: float = 6 * 3600.0
    min_rate_bytes_per_s: float = 0.0
    window_s: float = 120.0


class TransferGuard:
    """Watches one streamed transfer from a thread; past the deadline or below the minimum rate over the
    window it records why and shuts the socket down, which ends the blocked read in the downloading thread."""

    def __init__(self, limits: TransferLimits, url: str, response: requests.Response) -> None:
        self.limits = limits
        self.host = urlparse(url).hostname or url
        self.reason: str | None = None
        self._response = response
        self._done = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"transfer-guard-{self.host}", daemon=True)
        self._thread.start()

    def received(self, done: int) -> None:
        self._done = done

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5.0)

    def _watch(self) -> None:
        limits = self.limits
        start = time.monotonic()
        samples: deque[tuple[float, int]] = deque([(start, 0)])
        poll_s = max(0.05, min(1.0, limits.window_s / 4, limits.deadline_s / 4))
        while not self._stopped.wait(poll_s):
            if getattr(self._response.raw, "closed", False):
                return  # the transfer ended (read to the end, or closed by its reader)
            now, done = time.monotonic(), self._done
            samples.append((now, done))
            while len(samples) > 1 and samples[1][0] <= now - limits.window_s:
                samples.popleft()
            first_t, first_done = samples[0]
            rate = (done - first_done) / max(now - first_t, 1e-9)
            if now - start >= limits.deadline_s:
                self.reason = (
                    f"the transfer from {self.host} was still running at its deadline of {limits.deadline_s:g} s "
                    f"(download.deadline_s) after {done} bytes ({done / (now - start):.1f} B/s)"
                )
            elif now - start >= limits.window_s and rate < limits.min_rate_bytes_per_s:
                self.reason = (
                    f"the transfer from {self.host} ran at {rate:.1f} B/s over the last {limits.window_s:g} s, "
                    f"below download.min_rate_bytes_per_s = {limits.min_rate_bytes_per_s:g}"
                )
            if self.reason:
                _shut_down(self._response)
                return


def _shut_down(response: requests.Response) -> None:
    """Shut the response's socket down (urllib3 2 keeps the connection on a streamed response)."""
    connection = getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def open_session(
    credentials: Credentials | None,
    *,
    timeout_s: float = 120.0,
    edl_host: str = EDL_HOST,
    limits: TransferLimits | None = None,
) -> EarthdataSession:
    """A download session for ``credentials`` (None: anonymous, e.g. for a test server)."""
    # asf_search would otherwise POST details of every error to ASF's error-report service
    # (``asf.REPORT_ERRORS``, on by default).
    asf.REPORT_ERRORS = False
    return EarthdataSession(credentials, timeout_s=timeout_s, edl_host=edl_host, limits=limits)


@keeps_secrets_out(DownloadError)
def check_login(scene: Scene, session: EarthdataSession, max_hops: int = 8) -> bool:
    """Ask Earthdata Login once, before any download, whether it accepts the session's username/password.

    Follows the redirects of ``scene``'s URL without transferring data until the login host answers the login:
    a redirect onwards means accepted (True); 401/403 raises :class:`AuthenticationError`, so that one refused
    login stops the run instead of being tried again for every scene. False when nothing could be learnt
    (a token, no login asked, a network error: the downloads themselves report those).
    """
    creds = session.credentials
    first = scene.url or (scene.bursts[0].url if scene.bursts else None)  # a burst scene: its first burst
    if creds is None or not creds.has_login or creds.password is None or not first:
        return False
    url = str(first)
    login = HTTPBasicAuth(creds.username or "", creds.password.get_secret_value())
    try:
        for _ in range(max_hops):
            at_login = urlparse(url).hostname == session.edl_host
            with session.get(url, allow_redirects=False, stream=True, auth=login if at_login else None) as reply:
                if at_login:
                    if reply.status_code in (401, 403):
                        body = next(reply.iter_content(400), b"").decode("utf-8", errors="replace")
                        raise _client_error(
                            scene.product_id, url, f"HTTP {reply.status_code}: {body}", creds, creds.redact
                        )
                    return bool(reply.is_redirect)
                if not reply.is_redirect:
                    return False
                url = urljoin(url, reply.headers["Location"])
    except requests.RequestException as err:
        log.warning(
            "%s: the Earthdata login could not be checked (%s); downloading anyway",
            scene.product_id,
            type(err).__name__,
        )
    return False


# --------------------------------------------------------------------------------------------------- cache


def scene_path(scene: Scene, scene_dir: Path) -> Path:
    """Where the verified zip of ``scene`` lives in the scene cache."""
    return scene_dir / scene.file_name


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".md5")


def file_md5(path: Path) -> str:
    """Hex md5 of a file, read in 8 MiB blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def remembered_md5(path: Path) -> str | None:
    """The md5 in ``<zip>.md5`` if it was computed for this very file (same size and mtime), else None."""
    try:
        record = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        stat = path.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("size") != stat.st_size or record.get("mtime_ns") != stat.st_mtime_ns:
        return None
    md5 = record.get("md5")
    return md5 if isinstance(md5, str) else None


def remember_md5(path: Path, md5: str) -> None:
    stat = path.stat()
    record = {"md5": md5, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    write_text_atomic(_sidecar(path), json.dumps(record) + "\n")


def cached_scene(scene: Scene, scene_dir: Path) -> Path | None:
    """The cached zip of ``scene`` if its size and md5 match the search metadata, else None.

    The md5 comes from the sidecar when it matches the file's size and mtime; otherwise the file is hashed once
    and the result remembered. An invalid file is left alone here: only
    :func:`download_scene_file` (holding the scene's lock) deletes it.
    """
    path = scene_path(scene, scene_dir)
    if not path.is_file():
        return None
    if scene.size_bytes is not None and path.stat().st_size != scene.size_bytes:
        return None
    md5 = remembered_md5(path)
    if md5 is None:
        md5 = file_md5(path)
        if not _md5_matches(scene, md5):
            return None
        remember_md5(path, md5)
    if not _md5_matches(scene, md5):
        return None
    return path


def _md5_matches(scene: Scene, md5: str) -> bool:
    return scene.md5 is None or md5.lower() == scene.md5.strip().lower()


def needs_download(scene: Scene, scene_dir: Path) -> bool:
    """True when ``scene`` is neither a local catalog product nor a verified file (or assembled SAFE of its
    bursts) in the scene cache."""
    if scene.bursts:
        return cached_burst_safe(scene, scene_dir) is None
    return scene.local_path is None and cached_scene(scene, scene_dir) is None


def remove_scene_file(scene: Scene, scene_dir: Path) -> list[Path]:
    """Delete the cached zip of ``scene``, its sidecar and its unpacked measurement TIFFs (never a local catalog's
    file, but the copies unpacked from it); return what went."""
    unpacked = unpack_folder(scene_dir / UNPACKED_DIR_NAME, scene.local_path or Path(scene.file_name))
    removed_copies = [unpacked] if unpacked.is_dir() else []
    if removed_copies:
        shutil.rmtree(unpacked, ignore_errors=True)
    if scene.local_path is not None:
        return removed_copies
    if scene.bursts:
        folder = burst_folder(scene, scene_dir)
        with _scene_lock(burst_safe_path(scene, scene_dir)):
            if not folder.exists():
                return []
            shutil.rmtree(folder)
        return [*removed_copies, folder]
    path = scene_path(scene, scene_dir)
    removed = removed_copies
    with _scene_lock(path):
        for victim in (path, _sidecar(path)):
            if victim.exists():
                victim.unlink()
                removed.append(victim)
    return removed


def releasable_scenes(plan: Plan, keep_newest: int = 1) -> list[tuple[Scene, list[str]]]:
    """Downloaded scenes that may be deleted once the listed pairs complete, with those pair ids.

    The newest ``keep_newest`` acquisitions of each track are kept: the next run pairs a new date with them
    (1 for consecutive pairing, ``max_neighbours`` for a network). Local catalog products are never listed.
    """
    dates: dict[tuple[int, str], dict[Any, Any]] = defaultdict(dict)
    for pair in plan.pairs:
        for acquisition in (pair.reference, pair.secondary):
            dates[(pair.track, pair.direction.value)][acquisition.date] = acquisition
    newest = [group[d] for group in dates.values() for d in sorted(group)[-keep_newest:]]
    kept = {s.product_id for acquisition in newest for s in acquisition.scenes}
    users: dict[str, tuple[Scene, list[str]]] = {}
    for pair in plan.pairs:
        for scene in pair.scenes:
            if scene.local_path is None and scene.product_id not in kept:
                users.setdefault(scene.product_id, (scene, []))[1].append(pair.pair_id)
    return sorted(users.values(), key=lambda item: (item[0].start, item[0].product_id))


def _scene_lock(path: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock per scene across processes (released by the OS if the process dies)."""
    return file_lock(path.parent / _LOCK_DIR / f"{path.name}.lock")


# --------------------------------------------------------------------------------------------------- download


@keeps_secrets_out(DownloadError)
def download_scene_file(
    scene: Scene, scene_dir: Path, session: EarthdataSession, progress: ProgressCallback | None = None
) -> Path:
    """One download attempt of ``scene`` into ``scene_dir``; return the verified zip.

    Raises :class:`AuthenticationError` (refused: retrying will not help), :class:`TransientDownloadError`
    (5xx, timeout, cut or corrupt transfer: retry later) or :class:`DownloadError`, none of them chained to
    the ``requests`` error (which holds the login request and its headers). Nothing but a whole, verified zip
    ever appears under the final name; a failed attempt leaves no ``.part`` behind.
    """
    if not scene.url:
        raise DownloadError(f"{scene.product_id} has no download URL (search with 'asf' or an ASF export)")
    scene_dir.mkdir(parents=True, exist_ok=True)
    target = scene_path(scene, scene_dir)
    with _scene_lock(target):
        cached = cached_scene(scene, scene_dir)
        if cached is not None:
            return cached
        if target.exists():
            log.warning("%s: cached file fails size/md5 verification; downloading it again", target)
            target.unlink()
            _sidecar(target).unlink(missing_ok=True)
        part = target.with_name(target.name + ".part")
        part.unlink(missing_ok=True)  # left by a killed run; asf_search would skip an existing file
        if progress is not None:
            progress(0, scene.size_bytes)
        session.on_bytes = None if progress is None else _with_total(progress, scene.size_bytes)
        try:
            _fetch(str(scene.url), scene.product_id, part, session)
            md5 = _verify_download(scene, part)
            fsync_file(part)  # the sidecar vouches for the bytes, so they must be on disk before the rename
            part.replace(target)
        finally:
            session.on_bytes = None
            session.close_streams()
            part.unlink(missing_ok=True)
        remember_md5(target, md5)
    if progress is not None:
        size = target.stat().st_size
        progress(size, size)
    return target


def _with_total(progress: ProgressCallback, expected: int | None) -> ProgressCallback:
    """Report against the size ASF lists (the Content-Length header when it lists none)."""

    def report(done: int, header_total: int | None) -> None:
        progress(done, expected or header_total)

    return report


def _fetch(url: str, pid: str, part: Path, session: EarthdataSession) -> None:
    """``asf.download_url`` of ``url`` (the file of ``pid``) to ``part``, its failures turned into this project's
    errors (unchained: the ``requests`` errors hold the login request with its headers)."""
    redact = session.credentials.redact if session.credentials is not None else (lambda text: text)
    try:
        asf.download_url(url=url, path=str(part.parent), filename=part.name, session=session)
    except asf.ASFAuthenticationError as err:  # asf_search raises this for every HTTP 4xx
        raise _client_error(pid, url, str(err), session.credentials, redact) from None
    except asf.ASFDownloadError as err:
        raise DownloadError(f"{pid}: {redact(str(err))}") from None
    except requests.RequestException as err:
        raise _request_error(pid, url, err, session.stall_reason(), redact) from None


def _request_error(pid: str, url: str, err: requests.RequestException, stall: str | None, redact: Any) -> DownloadError:
    """The error for a failed request: a transfer ended by its guard, a 5xx, a broken connection, other."""
    if stall is not None:
        return TransientDownloadError(f"{pid}: {stall}; discarded, will retry")
    if isinstance(err, requests.HTTPError):
        code = err.response.status_code if err.response is not None else 0
        if code >= 500:
            return TransientDownloadError(f"{pid}: the server answered HTTP {code} for {url}; will retry")
        return DownloadError(f"{pid}: HTTP {code} for {url}")
    if isinstance(err, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError):
        return TransientDownloadError(
            f"{pid}: the transfer from {urlparse(url).hostname} broke off or stalled ({type(err).__name__}); will retry"
        )
    return DownloadError(f"{pid}: {type(err).__name__} for {url}: {redact(str(err))}")


def _client_error(pid: str, url: str, message: str, credentials: Credentials | None, redact: Any) -> DownloadError:
    """The error for an HTTP 4xx reply (asf_search's message is ``'HTTP <code>: <body>'``)."""
    match = re.match(r"HTTP (\d{3})", message)
    code = int(match.group(1)) if match else 0
    body = redact(message.partition(":")[2].strip())[:200]
    source = credentials.source if credentials is not None else "no credentials"
    if code in (401, 403):
        return AuthenticationError(
            f"{pid}: ASF refused the download (HTTP {code}) with the Earthdata credentials from {source}. Check "
            "the username/password or token, and that the Earthdata account has accepted the ASF EULA "
            f"(log in once at https://search.asf.alaska.edu). Server said: {body or '(nothing)'}"
        )
    if code in (408, 429):
        return TransientDownloadError(f"{pid}: the server asked to slow down (HTTP {code}); will retry")
    return DownloadError(f"{pid}: HTTP {code} for {url}: {body}")


def _verify_download(scene: Scene, part: Path) -> str:
    """Check byte count, md5 and SAFE structure of a finished transfer; return its md5."""
    pid = scene.product_id
    size = part.stat().st_size
    md5 = file_md5(part) if scene.size_bytes is None or size == scene.size_bytes else None
    if md5 is None or not _md5_matches(scene, md5):
        if _is_web_page(part):
            raise AuthenticationError(
                f"{pid}: the server sent a web page instead of the zip: Earthdata Login wants an interactive "
                "step (accept the ASF EULA / authorise the application at https://urs.earthdata.nasa.gov)"
            )
        if md5 is None:
            raise TransientDownloadError(
                f"{pid}: received {size} bytes but ASF lists {scene.size_bytes} (truncated transfer); discarded, "
                "will retry"
            )
        raise TransientDownloadError(
            f"{pid}: md5 of the download is {md5} but ASF lists {scene.md5} (corrupt transfer); discarded, will retry"
        )
    check_safe_members(part, f"{pid} as downloaded from {scene.url}")
    return md5


def _is_web_page(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(512)
    lowered = head.lower()
    return not head.startswith(ZIP_MAGIC) and (b"<html" in lowered or b"<!doctype" in lowered)


# --------------------------------------------------------------------------------------------------- bursts


def burst_folder(scene: Scene, scene_dir: Path) -> Path:
    """Where the bursts of ``scene`` (burst acquisition) are downloaded and assembled."""
    return scene_dir / "bursts" / scene.product_id


def burst_safe_path(scene: Scene, scene_dir: Path) -> Path:
    """The SAFE assembled from the bursts of ``scene``."""
    return burst_folder(scene, scene_dir) / f"{scene.product_id}.SAFE"


def _burst_record(safe: Path) -> Path:
    return safe.with_name(safe.name + ".bursts.json")


def cached_burst_safe(scene: Scene, scene_dir: Path) -> Path | None:
    """The assembled SAFE of ``scene`` if it was built from exactly the scene's bursts, else None."""
    safe = burst_safe_path(scene, scene_dir)
    try:
        record = json.loads(_burst_record(safe).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not safe.is_dir() or not isinstance(record, dict) or record.get("bursts") != _burst_names(scene):
        return None
    return safe


def _burst_names(scene: Scene) -> list[str]:
    return sorted(b.name for b in scene.bursts)


@keeps_secrets_out(DownloadError)
def download_burst_scene(
    scene: Scene, scene_dir: Path, session: EarthdataSession, progress: ProgressCallback | None = None
) -> Path:
    """Download the bursts of ``scene`` (TIFF each, annotation XML once per polarisation) and assemble their SAFE.

    Each file is fetched to ``<name>.part``, checked and renamed, so a rerun resumes from the files already
    verified. ASF lists no md5 for bursts: a TIFF must have the listed byte count and a TIFF header, an XML must
    parse as ASF burst metadata holding the swaths' annotations, and the assembled SAFE must hold every burst
    at the size its annotation gives. Raises as :func:`download_scene_file`.
    """
    folder = burst_folder(scene, scene_dir)
    folder.mkdir(parents=True, exist_ok=True)
    safe = burst_safe_path(scene, scene_dir)
    total = scene.size_bytes
    with _scene_lock(safe):
        cached = cached_burst_safe(scene, scene_dir)
        if cached is not None:
            return cached
        tiffs: dict[str, Path] = {}
        done = 0
        for burst in scene.bursts:
            target = folder / burst.file_name
            if not (target.is_file() and target.stat().st_size == burst.size_bytes):
                if progress is not None:
                    session.on_bytes = _offset_progress(progress, done, total)
                _fetch_checked(burst.url, burst.name, target, session, lambda part, b=burst: _check_burst_tiff(b, part))
            tiffs[burst.name] = target
            done += target.stat().st_size
            if progress is not None:
                progress(done, total)
        metadata: dict[str, Path] = {}
        for burst in scene.bursts:
            pol = burst.polarization.value
            target = folder / burst.metadata_file_name
            if pol not in metadata and not _metadata_ok(scene, pol, target):
                _fetch_checked(
                    burst.metadata_url,
                    f"{scene.product_id} {pol} annotation",
                    target,
                    session,
                    lambda part, p=pol: _check_metadata(scene, p, part),
                )
            metadata[pol] = target
        try:
            assemble_safe(scene.product_id, scene.bursts, tiffs, metadata, safe)
        except SafeError as err:
            raise DownloadError(
                f"{scene.product_id}: the downloaded bursts do not assemble into a SAFE: {err}"
            ) from err
        write_text_atomic(_burst_record(safe), json.dumps({"bursts": _burst_names(scene)}) + "\n")
        for path in tiffs.values():
            path.unlink()  # the SAFE holds the same pixels
    return safe


def _offset_progress(progress: ProgressCallback, offset: int, total: int | None) -> ProgressCallback:
    def report(done: int, _header_total: int | None) -> None:
        progress(offset + done, total)

    return report


def _fetch_checked(url: str, label: str, target: Path, session: EarthdataSession, check: Any) -> None:
    """Fetch ``url`` to ``target`` through ``<target>.part``: ``check(part)`` raises if the bytes are wrong."""
    part = target.with_name(target.name + ".part")
    part.unlink(missing_ok=True)
    try:
        _fetch(url, label, part, session)
        if _is_web_page(part):
            raise AuthenticationError(
                f"{label}: the server sent a web page instead of the file: Earthdata Login wants an interactive "
                "step (accept the ASF EULA / authorise the application at https://urs.earthdata.nasa.gov)"
            )
        check(part)
        fsync_file(part)
        part.replace(target)
    finally:
        session.on_bytes = None
        session.close_streams()
        part.unlink(missing_ok=True)


#: TIFF and BigTIFF headers, little and big endian (TIFF 6.0 §2; BigTIFF).
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _check_burst_tiff(burst: Burst, part: Path) -> None:
    size = part.stat().st_size
    if burst.size_bytes is not None and size != burst.size_bytes:
        raise TransientDownloadError(
            f"{burst.name}: received {size} bytes but ASF lists {burst.size_bytes} (truncated or corrupt transfer); "
            "discarded, will retry"
        )
    with part.open("rb") as handle:
        if handle.read(4) not in TIFF_MAGIC:
            raise TransientDownloadError(f"{burst.name}: the download is not a TIFF; discarded, will retry")


def _check_metadata(scene: Scene, pol: str, part: Path) -> None:
    try:
        meta = read_burst_metadata(part.read_bytes(), f"{scene.product_id} {pol} annotation")
        for swath in {b.swath.value for b in scene.bursts if b.polarization.value == pol}:
            meta.annotation(swath, pol)
    except SafeError as err:
        raise TransientDownloadError(f"{err}; discarded, will retry") from err


def _metadata_ok(scene: Scene, pol: str, path: Path) -> bool:
    try:
        _check_metadata(scene, pol, path)
    except (TransientDownloadError, OSError):
        return False
    return True


# --------------------------------------------------------------------------------------------------- local


def verify_local_scene(scene: Scene) -> Path:
    """Check that a local catalog's SAFE opens and holds a manifest, annotation and measurement members."""
    path = scene.local_path
    if path is None:
        raise DownloadError(f"{scene.product_id} has no local path")
    check_safe_members(path, f"local scene {path}")
    return path


def check_safe_members(path: Path, what: str) -> None:
    """Raise :class:`DownloadError` unless ``path`` opens as a SAFE with IW SLC annotation and measurement members."""
    try:
        with SafeArchive(path) as archive:
            annotations = archive.glob("annotation/s1?-iw?-slc-*.xml")
            measurements = archive.glob("measurement/s1?-iw?-slc-*.tif*")
    except SafeError as err:
        raise DownloadError(f"{what}: {err}") from err
    if not annotations or not measurements:
        missing = "annotation" if not annotations else "measurement"
        raise DownloadError(f"{what} lacks {missing} files for IW SLC swaths")
