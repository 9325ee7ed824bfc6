"""surveydm: data management for astronomical imaging surveys.

Layers (data flows one way): observatory -> ingest -> archive + registry -> orchestration ->
pipelines -> products + catalogs -> publication. See ``docs/architecture.md``.
"""

__version__ = "0.1.0"
