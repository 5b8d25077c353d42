"""The ISCE2 engine: render topsApp inputs, run ``topsApp.py`` safely, read its dense offsets.

Nothing here imports Prefect; the stage wrappers live in :mod:`tasks.render` and :mod:`tasks.engine`.
Facts about topsApp (properties, steps, file names, band order, no-data) are cited from
``../shared/reference/isce2-topsapp.md`` by section.
"""
