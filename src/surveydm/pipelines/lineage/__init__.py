"""Data lineage, validity flags, staleness, target processing and data releases (seed 003:
Astro-WISE's full lineage, ``is_valid`` apart from ``quality_flags``, up-to-date checks and the
``make`` metaphor; seed 002: reprocessing what used an invalidated image; seed 000 section 5:
productions).

Modules, one concept each: ``resolve`` (what an ID names), ``graph`` (a lineage as a typed
graph), ``prov`` (W3C PROV-JSON), ``flags`` (human validity flags), ``stale`` (what is out of
date and why), ``remake`` (``make`` and ``reprocess`` as jobs), ``releases`` (frozen data
releases), ``navigate`` (five-line scripts answering with astropy Tables). The recursive
queries are :mod:`surveydm.db.lineage`.
"""
