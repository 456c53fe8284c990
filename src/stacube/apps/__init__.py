"""stacube's own analysis processes, registered under these names (see
:data:`stacube.jobs.processes.BUILTIN` and the entry points of ``stacube.processes``):

* ``water`` (:mod:`.water`): per-observation water classification (MNDWI or NDWI above a
  threshold), then the water frequency and the clear and wet observation counts per period;
* ``ndvi-anomaly`` (:mod:`.ndvi_anomaly`): median NDVI of a target time range minus that of a
  baseline time range, with the observations used in each;
* ``change`` (:mod:`.change`): the difference of two composites of a band or index between two
  time ranges, and the pixels whose change exceeds a threshold.

Each is a process module (``Parameters``, ``OUTPUTS``, ``prepare_job``, ``execute``; see
:mod:`stacube.jobs.processes`); what they share is in :mod:`.common`.
"""
