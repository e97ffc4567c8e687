"""Batch embedding jobs: SOURCE -> cluster -> resumable Zarr stores (``python -m xterrafm embed``).

Modules: :mod:`~xterrafm.batch.sources` (SOURCE arguments -> lazy cubes, one per CRS),
:mod:`~xterrafm.batch.clusters` (open and always close the cluster), :mod:`~xterrafm.batch.job`
(the job), :mod:`~xterrafm.batch.summary`, :mod:`~xterrafm.batch.preview`,
:mod:`~xterrafm.batch.interrupts` and :mod:`~xterrafm.batch.gateway_config`.
"""
