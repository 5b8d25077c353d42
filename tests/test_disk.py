"""Disk usage of folders, for the run summary."""

from __future__ import annotations

from pathlib import Path

from offset_cube.disk import human_bytes, tree_bytes


def test_tree_bytes_counts_what_files_use_on_disk(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "data.bin").write_bytes(b"x" * 1_000_000)
    sparse = tmp_path / "sparse.slc"
    with sparse.open("wb") as handle:
        handle.truncate(50_000_000)  # like an all-zero sparse measurement TIFF: big, using almost nothing
    (tmp_path / "link").symlink_to(tmp_path / "a")  # not followed
    total = tree_bytes(tmp_path)
    assert 1_000_000 <= total < 1_200_000
    assert tree_bytes(tmp_path / "missing") == 0


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (512, 1_500, 9_000_000_000, 3.2e12)] == ["512 B", "1.5 kB", "9.0 GB", "3.2 TB"]
