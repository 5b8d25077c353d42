"""Prefect task wrappers, one module per stage. They add retries, caching, names, logging and artifacts
around plain functions of the ``offset_cube`` package, which do the work."""
