"""One exception type for every user-facing problem: the CLI prints its message, never a traceback."""

import json
from pathlib import Path


class StarcurveError(Exception):
    """A problem with the user's input or setup, with a message that says what to do."""


def read_json_object(path, what: str = "JSON file") -> dict:
    """A JSON object read from ``path``; a clear ``StarcurveError`` if it is missing, damaged or not an object."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise StarcurveError(
            f"{path}: corrupted or unreadable {what} ({str(e).splitlines()[0][:120]})"
        ) from None
    if not isinstance(doc, dict):
        raise StarcurveError(f"{path}: a {what} must be a JSON object")
    return doc
