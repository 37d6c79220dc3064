"""What embedding tags and reading their vectors fail with."""

from __future__ import annotations

from collections.abc import Sequence

from sdl.safety.errors import UserError


class MissingWordVectorError(UserError, ValueError):
    """Tags that a source cannot embed; ``tags`` lists them all, in request order."""

    def __init__(self, message: str, tags: Sequence[str]) -> None:
        super().__init__(message)
        self.tags = list(tags)


def check_tag_list(tags: Sequence[str]) -> None:
    # A bare string is a Sequence[str] too, and would be embedded letter by letter.
    if isinstance(tags, str):
        raise TypeError(f"expected a sequence of tags, got the string {tags!r}")


class WordVectorCacheError(UserError, ValueError):
    """A tag-vector cache file that cannot be read or is inconsistent."""
