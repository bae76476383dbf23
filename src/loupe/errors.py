"""Loupe's one exception type.

`LoupeError` subclasses `ValueError` so callers that already catch bad-input `ValueError`s keep working;
every message names the offending input (file, image size, sample index, key) and, where it helps, the
valid choices.
"""


class LoupeError(ValueError):
    """Bad input or configuration, reported with a message that names the problem."""
