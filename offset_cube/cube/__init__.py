"""The velocity cube: fixed map grid, per-pair products, Zarr store with safe incremental writes."""
