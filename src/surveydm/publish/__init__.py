"""Publication layer: the operations portal (``publish.web``), the nightly report
(``publish.report``) and the read-only SQL browser (``publish.sqlbrowser``).

It reads the registry and the archive and never writes pixels or registry rows (seed 000
section 7; design guide: "the web never writes pixels").
"""
