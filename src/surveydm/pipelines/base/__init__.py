"""The task shape every pipeline task is built on (Rubin ``pipe_base``: connections declare
what a task reads and writes; the science is a pure function in ``reduction/``; one helper
records products, lineage and QC). See docs/architecture.md, "The task shape".

* :mod:`~surveydm.pipelines.base.connections` -- inputs, prerequisite calibrations and outputs
  declared by product type and data ID, and their resolution in the registry.
* :mod:`~surveydm.pipelines.base.recording` -- :func:`~surveydm.pipelines.base.recording.publish`,
  the one helper that records checks, files, products and lineage when a job ends.
"""
