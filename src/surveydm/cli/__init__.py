"""The ``surveydm`` command: a thin layer over the library (``surveydm --help``)."""
