"""Gopher quality and repetition rules, with the published default thresholds.

Rae et al., 2021, "Scaling Language Models: Methods, Analysis & Insights from Training Gopher", appendix A
(MassiveWeb quality and repetition filters); thresholds and rule order as in datatrove's GopherQualityFilter and
GopherRepetitionFilter. Words come from ``filtering.textstats``, compiled rules close to spaCy's English tokenizer
(which datatrove uses) run over the whole batch; benchmarks/filters.py measures the agreement with datatrove.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from filtering import textstats
from filtering.base import Filter, Verdict

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_STOP_WORD_HASHES = textstats.token_hashes(STOP_WORDS)


class GopherQualityFilter(Filter):
    """Args:
    min_doc_words, max_doc_words: bounds on non-symbol words.
    min_avg_word_length, max_avg_word_length: bounds on the mean length of non-symbol words.
    max_symbol_word_ratio: most ``#`` (and, separately, ellipses) per word.
    max_bullet_lines_ratio: most lines starting with a bullet.
    max_ellipsis_lines_ratio: most lines ending with an ellipsis.
    max_non_alpha_words_ratio: at least this share of words must contain a letter.
    min_stop_words: fewest English stop words (the, be, to, of, and, that, have, with).
    fields: text columns; defaults to the recipe's text fields (joined by blank lines).
    """

    name = "gopher_quality"

    def __init__(
        self,
        min_doc_words: int | None = 50,
        max_doc_words: int | None = 100_000,
        min_avg_word_length: float | None = 3,
        max_avg_word_length: float | None = 10,
        max_symbol_word_ratio: float | None = 0.1,
        max_bullet_lines_ratio: float | None = 0.9,
        max_ellipsis_lines_ratio: float | None = 0.3,
        max_non_alpha_words_ratio: float | None = 0.8,
        min_stop_words: int | None = 2,
        fields: Sequence[str] | None = None,
    ) -> None:
        super().__init__(fields)
        self.min_doc_words, self.max_doc_words = min_doc_words, max_doc_words
        self.min_avg_word_length, self.max_avg_word_length = min_avg_word_length, max_avg_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio, self.max_ellipsis_lines_ratio = max_bullet_lines_ratio, max_ellipsis_lines_ratio
        self.max_non_alpha_words_ratio, self.min_stop_words = max_non_alpha_words_ratio, min_stop_words

    def keep_batch(self, rows: list[dict[str, Any]]) -> list[Verdict]:
        texts = [self.text(row, "\n\n") for row in rows]
        counts = textstats.quality_counts(*textstats.encode(texts), _STOP_WORD_HASHES).tolist()
        return [self._verdict(text, *c) for text, c in zip(texts, counts, strict=True)]

    def _verdict(self, text: str, n_words: int, n_content: int, chars: int, n_alpha: int, n_stop: int) -> Verdict:
        if self.min_doc_words and n_content < self.min_doc_words:
            return False, "gopher_short_doc"
        if self.max_doc_words and n_content > self.max_doc_words:
            return False, "gopher_long_doc"
        if n_content:  # the mean of no words is undefined: no verdict on it
            mean = chars / n_content
            if self.min_avg_word_length and mean < self.min_avg_word_length:
                return False, "gopher_below_avg_threshold"
            if self.max_avg_word_length and mean > self.max_avg_word_length:
                return False, "gopher_above_avg_threshold"
        n_words = n_words or 1
        if self.max_symbol_word_ratio:
            if text.count("#") / n_words > self.max_symbol_word_ratio:
                return False, "gopher_too_many_hashes"
            if (text.count("...") + text.count("…")) / n_words > self.max_symbol_word_ratio:
                return False, "gopher_too_many_ellipsis"
        lines = text.splitlines() or [""]
        if self.max_bullet_lines_ratio:
            bullets = sum(line.lstrip().startswith(("•", "-")) for line in lines)
            if bullets / len(lines) > self.max_bullet_lines_ratio:
                return False, "gopher_too_many_bullets"
        if self.max_ellipsis_lines_ratio:
            ending = sum(line.rstrip().endswith(("...", "…")) for line in lines)
            if ending / len(lines) > self.max_ellipsis_lines_ratio:
                return False, "gopher_too_many_end_ellipsis"
        if self.max_non_alpha_words_ratio and n_alpha / n_words < self.max_non_alpha_words_ratio:
            return False, "gopher_below_alpha_threshold"
        if self.min_stop_words and n_stop < self.min_stop_words:
            return False, "gopher_enough_stop_words"
        return True, None


class GopherRepetitionFilter(Filter):
    """Args:
    dup_line_frac, dup_para_frac: most duplicated lines / paragraphs (share of elements).
    dup_line_char_frac, dup_para_char_frac: most characters in duplicated lines / paragraphs.
    top_n_grams: (n, most share of characters in the most frequent n-gram) pairs.
    dup_n_grams: (n, most share of characters in repeated n-grams) pairs.
    fields: text columns; defaults to the recipe's text fields (joined by blank lines).
    """

    name = "gopher_repetition"

    def __init__(
        self,
        dup_line_frac: float = 0.3,
        dup_para_frac: float = 0.3,
        dup_line_char_frac: float = 0.2,
        dup_para_char_frac: float = 0.2,
        top_n_grams: Sequence[Sequence[float]] = ((2, 0.2), (3, 0.18), (4, 0.16)),
        dup_n_grams: Sequence[Sequence[float]] = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)),
        fields: Sequence[str] | None = None,
    ) -> None:
        super().__init__(fields)
        self.dup_line_frac, self.dup_para_frac = dup_line_frac, dup_para_frac
        self.dup_line_char_frac, self.dup_para_char_frac = dup_line_char_frac, dup_para_char_frac
        self.top_n_grams = [(int(n), float(f)) for n, f in top_n_grams]
        self.dup_n_grams = [(int(n), float(f)) for n, f in dup_n_grams]

    def keep_batch(self, rows: list[dict[str, Any]]) -> list[Verdict]:
        texts = [self.text(row, "\n\n") for row in rows]
        max_n = max([n for n, _ in self.top_n_grams + self.dup_n_grams] or [1])
        want_top, want_dup = np.zeros(max_n + 1, dtype=np.bool_), np.zeros(max_n + 1, dtype=np.bool_)
        want_top[[n for n, _ in self.top_n_grams]] = True
        want_dup[[n for n, _ in self.dup_n_grams]] = True
        points, classes, offsets = textstats.encode(texts)
        found = textstats.repetition_counts(points, classes, offsets, max_n, want_top, want_dup)
        return [self._verdict(*args) for args in zip(texts, *(a.tolist() for a in found), strict=True)]

    def _verdict(self, text: str, segments: list[int], top: list[int], dup: list[int]) -> Verdict:
        if not text.strip():
            return True, None  # nothing repeats in nothing; emptiness is the length filter's call
        size = len(text)
        paragraphs, para_dups, para_chars, lines, line_dups, line_chars = segments
        if para_dups / paragraphs > self.dup_para_frac:
            return False, "dup_para_frac"
        if para_chars / size > self.dup_para_char_frac:
            return False, "dup_para_char_frac"
        if line_dups / lines > self.dup_line_frac:
            return False, "dup_line_frac"
        if line_chars / size > self.dup_line_char_frac:
            return False, "dup_line_char_frac"
        for n, limit in self.top_n_grams:
            if top[n] / size > limit:
                return False, f"top_{n}_gram"
        for n, limit in self.dup_n_grams:
            if dup[n] / size > limit:
                return False, f"duplicated_{n}_n_grams"
        return True, None
