"""Prefect flows (wiring only) and the ``offset-cube`` command line."""
