"""The clone is self-contained: nothing cites or reads files outside it.

The team's working notes (a ``shared/`` folder beside the clone) are not part of the repository, so code, tests,
benchmarks and documentation cite public sources instead (ESA document ids, ISCE2 source paths, papers, the
repository's own tests). This scans every tracked text file of those kinds for paths into that folder, the notes'
file names and bare section references ("reference §4", "(§3.3)") that only make sense with the notes at hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: Where citations live: the package, the Prefect layers, benchmarks, tests (not their data) and the docs.
SCANNED_DIRS = ("offset_cube", "flows", "tasks", "deployments", "bench", "tests", "docs", "examples")
SCANNED_FILES = ("README.md", "Makefile", "pyproject.toml")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg"}
#: tests/data holds third-party files with their own texts; this file spells the patterns out.
SKIPPED = (ROOT / "tests" / "data", Path(__file__).resolve())
#: The notes' file names.
NOTE_NAMES = (
    "s1-tops-geometry",
    "offset-tracking",
    "asf-and-orbits",
    "isce2-topsapp",
    "itslive-cube",
    "prefect3",
    "style-anchors",
)
PRIVATE_CITATIONS = {
    "a path outside the clone": re.compile(r"\.\./shared|shared/(?:reference|data)/"),
    "a private note by name": re.compile(r"\b(?:" + "|".join(map(re.escape, NOTE_NAMES)) + r")\.md\b"),
    "a section of 'the reference'": re.compile(r"\b(?:reference|ref)(?: doc)?\s*§"),
    "a bare section number": re.compile(r"(?:^|[(;,:#])\s*§\s?\d"),
    "the team's notes": re.compile(r"\b(?:geometry|reference|team's) notes\b"),
}
#: Before a section sign, these name the public document it belongs to ("doi…, §2.3", "GEO.2018.1988.1 §2.2").
DOCUMENT_NAMED = re.compile(r"doi|https?://|[A-Z][A-Z0-9]+[-.][\w.-]*\d")


def private_citations(text: str) -> list[tuple[int, str, str]]:
    """(line number, what, line) for every citation of a source outside the repository."""
    hits = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in PRIVATE_CITATIONS.items():
            match = pattern.search(line)
            if match and not (what == "a bare section number" and DOCUMENT_NAMED.search(line[: match.start()])):
                hits.append((number, what, line.strip()))
    return hits


def scanned_files() -> list[Path]:
    files = [ROOT / name for name in SCANNED_FILES if (ROOT / name).is_file()]
    for folder in SCANNED_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in SUFFIXES and path.is_file() and not _skipped(path):
                files.append(path)
    return files


def _skipped(path: Path) -> bool:
    resolved = path.resolve()
    return any(resolved == skip or skip in resolved.parents for skip in SKIPPED) or "__pycache__" in path.parts


def test_no_file_cites_a_source_outside_the_repository() -> None:
    files = scanned_files()
    assert len(files) > 100, "the scan found too few files: the folders moved?"
    found = [
        f"{path.relative_to(ROOT)}:{number}: {what}: {line}"
        for path in files
        for number, what, line in private_citations(path.read_text(encoding="utf-8"))
    ]
    assert not found, "cite a public source (ESA id, ISCE2 path, paper, a test) instead of:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "Bounds (``../shared/reference/offset-tracking.md`` §2)",
        "geozero treats heights below -1500 m as bad (reference §4).",
        "outliers (reference doc §4.1)",
        "reproduce the grid (ref §4.2-4.3).",
        "the local heading (" + "s1-tops-geometry" + ".md §5.2)",
        "select by time, not list index (§3.3).",
        "real IW SLCs: 48–86, §1.3).",
        "follows from §5.3 of the geometry notes.",
    ],
)
def test_each_kind_of_private_citation_is_caught(line: str) -> None:
    assert private_citations(line)


@pytest.mark.parametrize(
    "line",
    [
        "Every zip file starts with a local file header (PKWARE APPNOTE §4.3.7).",
        "(Copernicus DEM Product Handbook, GEO.2018.1988.1 §2.2)",
        "(Gardner et al. 2018, https://doi.org/10.5194/tc-12-521-2018, §2.3)",
        "ESA COPE-GSEG-EOPG-TN-14-0025; ISCE2 ``components/isceobj/TopsProc/runDenseOffsets.py``",
        "The shared storage of a work pool; tests/data/README.md says where each file comes from.",
    ],
)
def test_public_citations_pass(line: str) -> None:
    assert not private_citations(line)


def test_tests_cannot_reach_beyond_this_machine() -> None:
    """conftest's guard: an outside host fails loudly (the URLs test records carry are never fetched)."""
    import socket

    import requests

    from tests.conftest import OutsideNetworkError

    with pytest.raises(OutsideNetworkError, match="datapool.asf.alaska.edu"):
        requests.get("https://datapool.asf.alaska.edu/SLC/SA/x.zip", timeout=5)
    with pytest.raises(OutsideNetworkError), socket.socket() as sock:
        sock.connect(("8.8.8.8", 53))
