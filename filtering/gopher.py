"""Gopher quality and repetition rules, with the published default thresholds.

Rae et al., 2021, "Scaling Language Models: Methods, Analysis & Insights from Training Gopher", appendix A
(MassiveWeb quality and repetition filters); thresholds as in datatrove's GopherQualityFilter and
GopherRepetitionFilter. Words come from a regex tokenizer (word runs and punctuation runs), not spaCy, so counts can
differ slightly from datatrove's on punctuation-heavy text.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from filtering.base import Filter, Verdict

_TOKENS = re.compile(r"\w+|[^\w\s]+")
_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")
PUNCTUATION = set(string.punctuation) | set("–—‘’“”…«»¡¿")
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})


def words_of(text: str) -> list[str]:
    return _TOKENS.findall(text)


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

    def keep(self, row: dict[str, Any]) -> bool | Verdict:
        text = "\n\n".join(t for _, t in self.texts(row))
        words = words_of(text)
        n_words = len(words) or 1
        content = [w for w in words if not set(w) <= PUNCTUATION]
        if self.min_doc_words and len(content) < self.min_doc_words:
            return False, "gopher_short_doc"
        if self.max_doc_words and len(content) > self.max_doc_words:
            return False, "gopher_long_doc"
        mean = sum(map(len, content)) / (len(content) or 1)
        if self.min_avg_word_length and mean < self.min_avg_word_length:
            return False, "gopher_below_avg_threshold"
        if self.max_avg_word_length and mean > self.max_avg_word_length:
            return False, "gopher_above_avg_threshold"
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
        if self.max_non_alpha_words_ratio:
            alpha = sum(any(c.isalpha() for c in w) for w in words)
            if alpha / n_words < self.max_non_alpha_words_ratio:
                return False, "gopher_below_alpha_threshold"
        if self.min_stop_words and sum(w.lower() in STOP_WORDS for w in words) < self.min_stop_words:
            return False, "gopher_enough_stop_words"
        return True


def _duplicates(parts: list[str]) -> tuple[int, int]:
    """(duplicate elements, characters in duplicate elements): every occurrence after the first counts."""
    seen: set[str] = set()
    count = chars = 0
    for part in parts:
        if part in seen:
            count += 1
            chars += len(part)
        else:
            seen.add(part)
    return count, chars


def _top_ngram_chars(words: list[str], n: int) -> int:
    grams = Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    if not grams:
        return 0
    gram, count = grams.most_common(1)[0]
    return len(gram) * count


def _duplicated_ngram_chars(words: list[str], n: int) -> int:
    """Characters covered by repeated n-grams, skipping past each repeat so overlaps are not counted twice."""
    seen: set[str] = set()
    chars = i = 0
    while i < len(words) - n + 1:
        gram = "".join(words[i : i + n])
        if gram in seen:
            chars += len(gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


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

    def keep(self, row: dict[str, Any]) -> bool | Verdict:
        text = "\n\n".join(t for _, t in self.texts(row)).strip()
        if not text:
            return True  # nothing repeats in nothing; emptiness is the length filter's call
        size = len(text)
        paragraphs = _PARAGRAPHS.split(text)
        dups, chars = _duplicates(paragraphs)
        if dups / len(paragraphs) > self.dup_para_frac:
            return False, "dup_para_frac"
        if chars / size > self.dup_para_char_frac:
            return False, "dup_para_char_frac"
        lines = _LINES.split(text)
        dups, chars = _duplicates(lines)
        if dups / len(lines) > self.dup_line_frac:
            return False, "dup_line_frac"
        if chars / size > self.dup_line_char_frac:
            return False, "dup_line_char_frac"
        words = words_of(text)
        for n, limit in self.top_n_grams:
            if _top_ngram_chars(words, n) / size > limit:
                return False, f"top_{n}_gram"
        for n, limit in self.dup_n_grams:
            if _duplicated_ngram_chars(words, n) / size > limit:
                return False, f"duplicated_{n}_n_grams"
        return True
