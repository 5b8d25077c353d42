"""The ISCE2 engine: render topsApp inputs, run ``topsApp.py`` safely, read its dense offsets.

Nothing here imports Prefect; the stage wrappers live in :mod:`tasks.render` and :mod:`tasks.engine`.
Facts about topsApp (properties, steps, file names, band order, no-data) come from the ISCE2 v2.6.5 sources
(isce-framework/isce2: ``applications/topsApp.py``, ``components/isceobj/TopsProc/``) and are cited by file.
"""
