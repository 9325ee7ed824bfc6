"""Exception base class: errors a user can act on, shown by the CLI as one clear message
without a traceback. Every layer may import it."""


class SurveydmError(Exception):
    """An error with a message meant for the operator (bad input, missing file, bad config)."""
