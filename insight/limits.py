"""Limits shared by every way in (HTTP, bus requests, library events), so one id is valid
everywhere or nowhere.

An id (track, user, watched folder path, excluded id, ...) is at most ``MAX_ID_CHARS``
characters. Over HTTP an id in a path is percent-encoded UTF-8, up to 12 bytes a character
(``%F0%9F%8E%B5``), so the bridge accepts request lines of ``MAX_REQUEST_LINE`` bytes: every
id within the limit fits, and a longer line is refused in the project's error shape.
"""

from __future__ import annotations

MAX_ID_CHARS = 4096
"""Longest id, in characters (Unicode code points), anywhere in the API or on the bus."""

MAX_ID_ENCODED_BYTES = MAX_ID_CHARS * 12
"""Longest percent-encoded form of an id within the limit (4 UTF-8 bytes × 3 characters)."""

MAX_REQUEST_LINE = MAX_ID_ENCODED_BYTES + 8192
"""Longest HTTP request line the bridge reads: one maximal id plus room for the rest."""


def id_problem(value: object, what: str = "id") -> str | None:
    """Why ``value`` is not a valid id (None when it is): a non-empty string within the limit,
    without NUL (SQLite, file paths and C libraries below would cut or refuse it)."""
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if not value:
        return f"{what} must not be empty"
    if len(value) > MAX_ID_CHARS:
        return f"{what} is {len(value)} characters long; the limit is {MAX_ID_CHARS}"
    if "\x00" in value:
        return f"{what} must not contain a NUL character"
    return None


MIN_SAMPLE_RATE = 8_000
"""Lowest PCM sample rate accepted (Hz): below it, resampling to the model rate would multiply
a small body into minutes of audio (a 4 KB body at 1 Hz was 2 000 s at 48 kHz)."""

MAX_SAMPLE_RATE = 384_000
"""Highest PCM sample rate accepted (Hz), the highest rate audio interfaces offer."""

MAX_VECTOR_DIM = 8192
"""Most values in an embedding sent to the API (models give 512; larger CLAPs 1024)."""
