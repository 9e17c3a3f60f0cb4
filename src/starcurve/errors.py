"""One exception type for every user-facing problem: the CLI prints its message, never a traceback."""


class StarcurveError(Exception):
    """A problem with the user's input or setup, with a message that says what to do."""
