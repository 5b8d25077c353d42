"""The velocity cube: fixed map grid, per-pair products, Zarr store with safe incremental writes.

Modules and the functions other stages call:

- :mod:`.grid` — ``grid_for_job(area_wkt, GridConfig) -> CubeGrid`` (CRS auto/UTM/polar, bounds snapped outward).
- :mod:`.velocity` — the one offsets → velocity conversion: ``offsets_to_velocity(...) -> Velocity`` (vx, vy, v in
  m/yr on a CRS's axes), ``velocity_from_result(result_ds, crs)``, ``ground_displacement(...)`` (E, N metres).
- :mod:`.product` — ``make_pair_product(result_path, grid, ProductConfig, out) -> Path``, ``product_path(...)``.
- :mod:`.store` — ``insert_products(cube_path, products, grid=, area_wkt=, job_config=, replace=,
  lock_timeout_s=) -> InsertReport`` (merge products into the next version), ``grid_for_cube(cube_path, grid,
  area_wkt) -> CubeGrid``, ``job_grid(job)``.
- :mod:`.schema` — what a version holds: ``Layer``, sorted unique ``mid_date``, variables, attributes, chunks.
- :mod:`.versions` — ``open_cube``, ``current_version``: immutable versions behind one link, swapped atomically.
- :mod:`.durability` — versions flushed to disk before they are published; crash-test fault injection.
- :mod:`.layers` — the cube's 1-D layer variables generated from :class:`offset_cube.conventions.PairRecord`.
- :mod:`.quicklook` — ``pair_quicklook(product, png)``, ``cube_summary(cube, png)``.
- :mod:`.export` — ``describe_cube(cube) -> CubeInfo`` (with ``.table()`` for ``inspect``),
  ``export_netcdf(cube, out, layer)``, ``export_geotiff(cube, out, layer)``.
- :mod:`.lookup` — ``existing_pair_ids(cube_path)`` for planning.
"""
