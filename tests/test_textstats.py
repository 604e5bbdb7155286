"""The compiled token statistics against plain-Python definitions of the Gopher quantities (datatrove's)."""

from __future__ import annotations

import random
import re
from collections import Counter

import numpy as np
import pytest

from filtering import textstats


def test_tokens_split_like_spacy_english():
    assert textstats.tokens("above). it's don't 3.14 #hash word... co-op 😀😀 x.y.z. they're") == (
        ["above", ")", ".", "it", "'s", "do", "n't", "3.14", "#", "hash", "word", "..."]
        + ["co", "-", "op", "😀", "😀", "x.y.z", ".", "they", "'re"]
    )
    assert textstats.tokens("") == [] and textstats.tokens(" \n\t ") == []
    assert textstats.tokens("ünïcödé wörds—dash") == ["ünïcödé", "wörds", "—", "dash"]


def _duplicates(parts: list[str]) -> tuple[int, int]:
    seen: set[str] = set()
    count = chars = 0
    for part in parts:
        if part in seen:
            count, chars = count + 1, chars + len(part)
        seen.add(part)
    return count, chars


def _top(words: list[str], n: int) -> int:
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0
    gram, count = Counter(grams).most_common(1)[0]
    return len(gram) * count


def _dup(words: list[str], n: int) -> int:
    seen: set[str] = set()
    chars = i = 0
    while i < len(words) - n + 1:
        gram = "".join(words[i : i + n])
        if gram in seen:
            chars, i = chars + len(gram), i + n
        else:
            seen.add(gram)
            i += 1
    return chars


def _random_text(rng: random.Random) -> str:
    vocab = ["the", "lamp", "of", "keeper", "it's", "co-op", "3.14", "wörd", "—", "...", "#tag", "(x)", "😀", "a"]
    lines = []
    for _ in range(rng.randint(0, 12)):
        line = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12)))
        lines.append(line if rng.random() < 0.7 or not lines else rng.choice(lines))
    return "".join(line + rng.choice(["\n", "\n\n", "\n\n\n", " "]) for line in lines).lstrip(" ")


def test_repetition_counts_equal_the_python_definitions_on_random_texts():
    rng = random.Random(3)
    texts = [_random_text(rng) for _ in range(400)] + ["", "\n", "\n\nx\n\n", "a a a a a a a a a a a a"]
    want = np.ones(11, dtype=np.bool_)
    segments, top, dup = textstats.repetition_counts(*textstats.encode(texts), 10, want, want)
    for i, text in enumerate(texts):
        paragraphs, lines, words = re.split(r"\n{2,}", text.strip()), re.split(r"\n+", text), textstats.tokens(text)
        expected = [len(paragraphs), *_duplicates(paragraphs), len(lines), *_duplicates(lines)]
        assert segments[i].tolist() == expected, text
        assert top[i, 2:].tolist() == [_top(words, n) for n in range(2, 11)], text
        assert dup[i, 2:].tolist() == [_dup(words, n) for n in range(2, 11)], text


def test_quality_counts_equal_the_python_definitions():
    rng = random.Random(4)
    texts = [_random_text(rng) for _ in range(200)] + ["", "!!! ... ###", "The THE the of"]
    stop = textstats.token_hashes(["the", "of", "and"])
    counts = textstats.quality_counts(*textstats.encode(texts), stop)
    for text, row in zip(texts, counts.tolist(), strict=True):
        words = textstats.tokens(text)
        content = [w for w in words if any(textstats.char_class(c) & textstats.PUNCT == 0 for c in w)]
        alpha = sum(any(c.isalpha() for c in w) for w in words)
        assert row == [len(words), len(content), sum(map(len, content)), alpha, len({"the", "of", "and"} & set(words))]


def test_token_hashes_refuse_multi_token_words():
    with pytest.raises(ValueError, match="single token"):
        textstats.token_hashes(["two words"])


def test_hash_table_keeps_the_first_value_per_key_and_finds_the_first_hit_per_row():
    table = textstats.HashTable(np.array([5, 7, 5, 2**63 + 1], dtype=np.uint64), np.array([0, 1, 2, 3]))
    hashes = np.array([9, 5, 7, 2**63 + 1, 8], dtype=np.uint64)
    rows = np.array([0, 2, 3, 4, 4, 5], dtype=np.uint64)  # rows: [9, 5], [7], [2^63 + 1], [], [8]
    assert table.first_hits(hashes, rows).tolist() == [0, 1, 3, -1, -1]


def test_word_shingles_ignore_case_and_punctuation_and_keep_short_texts_whole():
    hashes, rows = textstats.word_shingles(["The cat, sat!", "the CAT sat", "", "a b c d"], 3)
    spans = [hashes[a:b].tolist() for a, b in zip(rows[:-1], rows[1:], strict=True)]
    assert spans[0] == spans[1] and len(spans[0]) == 1 and spans[2] == [] and len(spans[3]) == 2
    with pytest.raises(ValueError, match="n >= 1"):
        textstats.word_shingles(["x"], 0)
