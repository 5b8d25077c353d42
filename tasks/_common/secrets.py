"""Prefect Secret blocks: the one place credentials are read from Prefect (the domain resolves them in
:mod:`offset_cube.credentials`)."""

from __future__ import annotations

from typing import Any, cast


def secret_value(name: str) -> Any:
    """The value of the Prefect Secret block ``name`` (None when there is no such block)."""
    from prefect.blocks.system import Secret

    try:
        block = cast(Any, Secret.load(name))  # a block in sync code (Prefect dispatches on the caller)
    except ValueError:
        return None
    return block.get()
