"""Which pairs a cube already holds, so planning can skip them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import xarray as xr

from offset_cube.conventions import PairRecord
from offset_cube.errors import CubeError

#: 1-D variable along ``mid_date`` holding each layer's pair id (see :attr:`offset_cube.planning.Pair.pair_id`).
PAIR_ID_VARIABLE = PairRecord.cube_name_of("pair_id")


def existing_pair_ids(cube_path: Path) -> set[str]:
    """Pair ids of the layers in the cube at ``cube_path``; empty when there is no cube yet."""
    if not cube_path.exists():
        return set()
    try:
        # Resolve the link first: the cube is a link to an immutable version that a writer may swap meanwhile.
        with xr.open_zarr(cube_path.resolve(), consolidated=False) as cube:
            if PAIR_ID_VARIABLE not in cube.variables:
                raise CubeError(f"cube {cube_path} has no '{PAIR_ID_VARIABLE}' variable; is it an offset-cube cube?")
            return {str(v) for v in cube[PAIR_ID_VARIABLE].values}
    except (OSError, ValueError, KeyError) as err:
        raise CubeError(f"cannot read cube {cube_path}: {err}") from err


#: 1-D variable along ``mid_date`` holding each layer's later acquisition time (ITS_LIVE name).
LATEST_ACQUISITION_VARIABLE = PairRecord.cube_name_of("secondary_time")


def latest_acquisition(cube_path: Path) -> dt.datetime | None:
    """The latest secondary acquisition time in the cube (UTC), or None when there is no cube or no layer."""
    if not cube_path.exists():
        return None
    try:
        with xr.open_zarr(cube_path.resolve(), consolidated=False) as cube:
            if LATEST_ACQUISITION_VARIABLE not in cube.variables or cube.sizes.get("mid_date", 0) == 0:
                return None
            values = np.asarray(cube[LATEST_ACQUISITION_VARIABLE].values).astype("datetime64[us]")
    except (OSError, ValueError, KeyError) as err:
        raise CubeError(f"cannot read cube {cube_path}: {err}") from err
    latest = values.max()
    return dt.datetime.fromisoformat(str(latest)).replace(tzinfo=dt.UTC)
