"""FineWeb line rules: documents made of lines that do not read like prose.

Penedo et al., 2024, "The FineWeb Datasets" (§3.5, the custom filters added after C4 and Gopher): enough lines end
in punctuation, not mostly short lines, few characters in duplicated lines, and not a list (newlines per word).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from filtering.base import Filter, Verdict

TERMINAL = (".", "!", "?", '"', "'", "”", "’", ")", ":", ";", "…")


class FineWebQualityFilter(Filter):
    """Args:
    line_punct_thr: least share of lines ending in terminal punctuation.
    short_line_thr: most share of lines of at most ``short_line_length`` characters.
    short_line_length: what counts as a short line.
    char_duplicates_ratio: most share of characters in lines that repeat an earlier line.
    new_line_ratio: most newlines per word (lists and tables have many).
    fields: text columns (joined); defaults to the recipe's text fields.
    """

    name = "fineweb_quality"

    def __init__(
        self,
        line_punct_thr: float = 0.12,
        short_line_thr: float = 0.67,
        short_line_length: int = 30,
        char_duplicates_ratio: float = 0.01,
        new_line_ratio: float = 0.3,
        fields: Sequence[str] | None = None,
    ) -> None:
        super().__init__(fields)
        self.line_punct_thr, self.short_line_thr, self.short_line_length = (
            line_punct_thr,
            short_line_thr,
            short_line_length,
        )
        self.char_duplicates_ratio, self.new_line_ratio = char_duplicates_ratio, new_line_ratio

    def keep(self, row: dict[str, Any]) -> bool | Verdict:
        text = self.text(row)
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        if not lines:
            return False, "empty"
        if sum(line.endswith(TERMINAL) for line in lines) / len(lines) < self.line_punct_thr:
            return False, "line_punct_ratio"
        if sum(len(line) <= self.short_line_length for line in lines) / len(lines) > self.short_line_thr:
            return False, "short_line_ratio"
        seen: set[str] = set()
        duplicated = 0
        for line in lines:
            if line in seen:
                duplicated += len(line)
            seen.add(line)
        if duplicated / max(1, sum(map(len, lines))) > self.char_duplicates_ratio:
            return False, "char_dup_ratio"
        if text.count("\n") / max(1, len(text.split())) > self.new_line_ratio:
            return False, "list_ratio"
        return True
