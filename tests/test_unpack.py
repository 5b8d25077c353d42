"""Zipped measurement TIFFs unpacked once per scene (builtin.unpack_measurements): SafeArchive.unpacked on small
zips laid out like real SAFE products, and the engine on the simulated stack (two pairs sharing a date)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from offset_cube.errors import SafeError
from offset_cube.safe.archive import SafeArchive

MEMBER = "measurement/s1a-iw2-slc-vv-20220814t000000-20220814t000030-044536-0550a5-005.tiff"


def make_zip(path: Path, payload: bytes) -> Path:
    """A zip with a real product's layout (``<id>.SAFE/manifest.safe``, a measurement member), deflated."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("S1A_TEST.SAFE/manifest.safe", "<xfdu/>")
        archive.writestr(f"S1A_TEST.SAFE/{MEMBER}", payload)
    return path


def test_a_member_is_unpacked_once_verified_and_again_when_the_zip_changes(
    tmp_path: Path, unpacked_copies: list[str]
) -> None:
    payload = np.random.default_rng(1).integers(0, 255, 300_000, dtype=np.uint8).tobytes()
    zipped = make_zip(tmp_path / "S1A_TEST.zip", payload)
    folder = tmp_path / "unpacked" / "S1A_TEST"
    with SafeArchive(zipped) as archive:
        first = Path(archive.unpacked(MEMBER, folder))
        assert first == folder / MEMBER and first.read_bytes() == payload
        assert Path(archive.unpacked(MEMBER, folder)) == first  # the same copy, not made again
    with SafeArchive(zipped) as archive:  # another pair opening the scene later
        archive.unpacked(MEMBER, folder)
    assert len(unpacked_copies) == 1
    assert sorted(p.name for p in first.parent.iterdir()) == sorted(
        [first.name, f"{first.name}.lock", f"{first.name}.stamp.json"]
    )
    # A re-downloaded (replaced) zip with other pixels: the old copy is not used.
    stat = zipped.stat()
    make_zip(zipped, payload[::-1])
    os.utime(zipped, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with SafeArchive(zipped) as archive:
        assert Path(archive.unpacked(MEMBER, folder)).read_bytes() == payload[::-1]
    assert len(unpacked_copies) == 2
    # A copy cut short (a crash between the rename and the stamp, or a truncated file) is made again.
    first.write_bytes(payload[:10])
    with SafeArchive(zipped) as archive:
        assert Path(archive.unpacked(MEMBER, folder)).read_bytes() == payload[::-1]
    assert len(unpacked_copies) == 3


def test_a_damaged_member_is_one_error_naming_the_zip_and_leaves_no_copy(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4000
    zipped = make_zip(tmp_path / "S1A_TEST.zip", payload)
    data = bytearray(zipped.read_bytes())
    start = data.find(b"measurement/") + len(MEMBER) + 200  # inside the deflated stream of the member
    data[start : start + 64] = bytes(64)
    zipped.write_bytes(bytes(data))
    folder = tmp_path / "unpacked" / "S1A_TEST"
    with SafeArchive(zipped) as archive, pytest.raises(SafeError, match="S1A_TEST.zip") as caught:
        archive.unpacked(MEMBER, folder)
    assert "cannot be unpacked" in str(caught.value)
    assert not (folder / MEMBER).exists() and not (folder / f"{MEMBER}.part").exists()


def test_a_folder_product_is_read_where_it_is(tmp_path: Path, unpacked_copies: list[str]) -> None:
    safe = tmp_path / "S1A_TEST.SAFE"
    (safe / "measurement").mkdir(parents=True)
    (safe / "manifest.safe").write_text("<xfdu/>")
    (safe / MEMBER).write_bytes(b"II*\0")
    with SafeArchive(safe) as archive:
        assert archive.unpacked(MEMBER, tmp_path / "unpacked") == str(safe / MEMBER)
    assert unpacked_copies == [] and not (tmp_path / "unpacked").exists()


def test_two_readers_at_once_unpack_the_member_once(tmp_path: Path, unpacked_copies: list[str]) -> None:
    """Two pairs opening the same scene at the same time (the flow runs pairs concurrently): one copy, under the
    member's lock, and both get it whole."""
    import threading

    payload = np.random.default_rng(2).integers(0, 255, 2_000_000, dtype=np.uint8).tobytes()
    zipped = make_zip(tmp_path / "S1A_TEST.zip", payload)
    folder = tmp_path / "unpacked" / "S1A_TEST"
    results: list[bytes] = []

    def read() -> None:
        with SafeArchive(zipped) as archive:
            results.append(Path(archive.unpacked(MEMBER, folder)).read_bytes())

    threads = [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [payload, payload] and len(unpacked_copies) == 1
