"""Commands whose stages land in later issues."""

from __future__ import annotations

from flows.cli.app import app, fail


@app.command()
def demo() -> None:
    """Run the whole flow on the simulated demo stack."""
    raise fail("the demo is not available in this build yet", code=1)


@app.command()
def inspect() -> None:
    """Describe a cube; export layers."""
    raise fail("cube inspection is not available in this build yet", code=1)


@app.command()
def serve() -> None:
    """Serve the job as a scheduled deployment."""
    raise fail("serving is not available in this build yet", code=1)
