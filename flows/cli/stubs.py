"""Commands whose stages land in later issues."""

from __future__ import annotations

from flows.cli.app import app, fail


@app.command()
def track() -> None:
    """Dense offsets between two co-registered images (built-in tracker)."""
    raise fail("the tracker is not available in this build yet", code=1)
