"""The library's one exception type.

Everything a user can get wrong (a bad file, an unreadable image, an impossible setting) raises
:class:`ImgcompError`. It subclasses :class:`ValueError` so callers that already catch bad values
keep working; the CLI turns it into a one-line message and a non-zero exit.
"""

from __future__ import annotations


class ImgcompError(ValueError):
    """A clear, user-facing error: bad input, malformed file, impossible option."""
