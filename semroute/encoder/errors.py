"""The one exception type the encoder raises for problems a user can fix (paths, files, models)."""

from __future__ import annotations


class EncoderError(Exception):
    """A model directory, file or graph the encoder cannot use; the message says what to do."""
