"""Length bounds on each text field, in characters and whitespace-separated words."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from filtering.base import Filter, Verdict


class LengthFilter(Filter):
    """Drops samples whose text fields are too short or too long.

    Args:
        min_chars: fewest characters a field may have (0 disables).
        max_chars: most characters a field may have (``None`` disables).
        min_words: fewest words a field may have (0 disables).
        max_words: most words a field may have (``None`` disables).
        fields: text columns to check; defaults to the recipe's text fields.
    """

    name = "length"

    def __init__(
        self,
        min_chars: int = 0,
        max_chars: int | None = None,
        min_words: int = 0,
        max_words: int | None = None,
        fields: Sequence[str] | None = None,
    ) -> None:
        super().__init__(fields)
        self.min_chars, self.max_chars = min_chars, max_chars
        self.min_words, self.max_words = min_words, max_words

    def keep(self, row: dict[str, Any]) -> bool | Verdict:
        for field, text in self.texts(row):
            chars = len(text.strip())
            if chars < self.min_chars:
                return False, f"too_few_chars:{field}"
            if self.max_chars is not None and chars > self.max_chars:
                return False, f"too_many_chars:{field}"
            if self.min_words or self.max_words is not None:
                words = len(text.split())
                if words < self.min_words:
                    return False, f"too_few_words:{field}"
                if self.max_words is not None and words > self.max_words:
                    return False, f"too_many_words:{field}"
        return True
