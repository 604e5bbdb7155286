"""Token statistics for a batch of texts, computed by compiled loops over the batch's code points.

The Gopher and MinHash filters must keep up with tens of thousands of samples per second per core. One regex pass
over a 1,300-character sample already costs ≈50 µs in Python on one core, so a batch is encoded once as UTF-32 code
points, every code point gets a class from a lookup table, and numba-compiled loops do the counting.

Gopher tokens follow spaCy's English tokenizer closely (see ``_tokens``); MinHash words are the runs of letters and
digits. Equal tokens and n-grams are recognised by 64-bit hashes; a collision (probability ≈ 2^-64 per pair) would
merge two n-grams.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np
from numba import njit

WORD, SPACE, ALPHA, PUNCT, UNDERSCORE = 1, 2, 4, 8, 16


def char_class(ch: str) -> int:
    """Class bits of one character: ``\\w``, ``\\s``, alphabetic, punctuation/symbol/control, underscore."""
    bits = 0
    if ch.isalnum() or ch == "_":
        bits |= WORD
    if ch.isspace():
        bits |= SPACE
    if ch.isalpha():
        bits |= ALPHA
    category = unicodedata.category(ch)
    if category[0] in "PS" or category == "Cc":
        bits |= PUNCT
    if ch == "_":
        bits |= UNDERSCORE
    return bits


_BMP_CLASSES = np.array([char_class(chr(c)) for c in range(0x10000)], dtype=np.uint8)


def encode(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(code points, class bits per code point, offsets): text ``i`` is ``[offsets[i], offsets[i + 1])``."""
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), out=offsets[1:])
    points = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    classes = _BMP_CLASSES[np.minimum(points, 0xFFFF)]
    astral = np.flatnonzero(points > 0xFFFF)
    if astral.size:  # emoji and rare scripts: classified one by one, outside the table
        classes[astral] = [char_class(chr(point)) for point in points[astral]]
    return points, classes, offsets


@njit(cache=True)
def _mix(x: np.uint64) -> np.uint64:
    # splitmix64's finaliser: spreads every input bit over the whole hash
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True)
def _combine(seed: np.uint64, value: np.uint64) -> np.uint64:
    return _mix(seed * np.uint64(0x9E3779B97F4A7C15) + value)


CONTENT, LETTER = 1, 2  # token flags: has a character that is not punctuation; has a letter


@njit(cache=True)
def _fnv(points, start, end) -> np.uint64:
    """FNV-1a over the code points [start, end): the raw hash of a token, a word or a line."""
    h = np.uint64(0xCBF29CE484222325)
    for i in range(start, end):
        h = (h ^ np.uint64(points[i])) * np.uint64(0x100000001B3)
    return h


@njit(cache=True)
def _emit(points, classes, start, end, hashes, lengths, flags, count) -> int:
    """Appends the token [start, end): its hash (FNV-1a, then mixed), length and flags."""
    bits = 0
    for i in range(start, end):
        if not classes[i] & PUNCT:
            bits |= CONTENT
        if classes[i] & ALPHA:
            bits |= LETTER
    hashes[count] = _mix(_fnv(points, start, end))
    lengths[count] = end - start
    flags[count] = bits
    return count + 1


@njit(cache=True)
def _is_symbol(c) -> bool:
    return (c & PUNCT) != 0 and (c & WORD) == 0


@njit(cache=True)
def _is_apostrophe(point) -> bool:
    return point == 39 or point == 0x2019


@njit(cache=True)
def _clitic(points, start, end) -> int:
    """Where an English clitic ('s 'd 'm 're 've 'll n't) starts at the end of [start, end); ``end`` if none."""
    if end - start > 2 and _is_apostrophe(points[end - 2]) and points[end - 1] in (100, 109, 115):
        return end - 2
    if end - start > 3 and _is_apostrophe(points[end - 3]):
        pair = (points[end - 2], points[end - 1])
        if pair == (114, 101) or pair == (118, 101) or pair == (108, 108):
            return end - 3
    if end - start > 3 and points[end - 3] == 110 and _is_apostrophe(points[end - 2]) and points[end - 1] == 116:
        return end - 3
    return end


@njit(cache=True)
def _tokens(points, classes, start, end, hashes, lengths, flags) -> int:
    """Word tokens of one text into the given arrays; returns how many.

    Close to spaCy's English tokenizer, which datatrove's Gopher filters use: split on whitespace; symbols at either
    end of a chunk become one token each ("..." stays whole); a symbol between two letters splits the chunk, except
    "." and "'" ("co-op" → co - op; "U.S" and "3.14" stay whole); clitics split off ("don't" → do n't).
    """
    count, i = 0, start
    while i < end:
        if classes[i] & SPACE:
            i += 1
            continue
        head = i
        while i < end and not classes[i] & SPACE:
            i += 1
        tail = i
        while head < tail and _is_symbol(classes[head]):
            count = _emit(points, classes, head, head + 1, hashes, lengths, flags, count)
            head += 1
        core_end = tail
        while core_end > head and _is_symbol(classes[core_end - 1]):
            core_end -= 1
        if core_end > head:
            clitic = _clitic(points, head, core_end)
            piece = head
            for k in range(head + 1, clitic - 1):
                if (
                    _is_symbol(classes[k])
                    and points[k] != 46
                    and not _is_apostrophe(points[k])
                    and classes[k - 1] & ALPHA
                    and classes[k + 1] & ALPHA
                ):
                    count = _emit(points, classes, piece, k, hashes, lengths, flags, count)
                    count = _emit(points, classes, k, k + 1, hashes, lengths, flags, count)
                    piece = k + 1
            count = _emit(points, classes, piece, clitic, hashes, lengths, flags, count)
            if clitic < core_end:
                count = _emit(points, classes, clitic, core_end, hashes, lengths, flags, count)
        k = core_end
        while k < tail:
            ellipsis = k + 3 <= tail and points[k] == 46 and points[k + 1] == 46 and points[k + 2] == 46
            step = 3 if ellipsis else 1
            count = _emit(points, classes, k, k + step, hashes, lengths, flags, count)
            k += step
    return count


@njit(cache=True)
def _words(points, classes, start, end, hashes) -> int:
    """Hashes of the runs of letters and digits (``[^\\W_]+``, the words of normalised text) of one text."""
    count, i = 0, start
    while i < end:
        if not classes[i] & WORD or classes[i] & UNDERSCORE:
            i += 1
            continue
        first = i
        while i < end and classes[i] & WORD and not classes[i] & UNDERSCORE:
            i += 1
        hashes[count] = _mix(_fnv(points, first, i))
        count += 1
    return count


@njit(cache=True)
def _longest(offsets) -> int:
    longest = 1
    for doc in range(offsets.size - 1):
        longest = max(longest, offsets[doc + 1] - offsets[doc])
    return longest


@njit(cache=True)
def quality_counts(points, classes, offsets, stop_words) -> np.ndarray:
    """Per text: tokens, content tokens (not all punctuation), characters in content tokens, tokens with a letter,
    and how many of the tokens hashed in ``stop_words`` occur (each counted once)."""
    counts = np.zeros((offsets.size - 1, 5), dtype=np.int64)
    longest = _longest(offsets)
    hashes = np.empty(longest, dtype=np.uint64)
    lengths = np.empty(longest, dtype=np.int64)
    flags = np.empty(longest, dtype=np.int64)
    for doc in range(offsets.size - 1):
        tokens = _tokens(points, classes, offsets[doc], offsets[doc + 1], hashes, lengths, flags)
        counts[doc, 0] = tokens
        seen = 0
        for t in range(tokens):
            if flags[t] & CONTENT:
                counts[doc, 1] += 1
                counts[doc, 2] += lengths[t]
            if flags[t] & LETTER:
                counts[doc, 3] += 1
            for w in range(stop_words.size):
                if hashes[t] == stop_words[w]:
                    seen |= 1 << w
        while seen:
            counts[doc, 4] += seen & 1
            seen >>= 1
    return counts


def tokens(text: str) -> list[str]:
    """The Gopher word tokens of ``text``, as strings (for tests and debugging; the filters stay in the kernels)."""
    points, classes, offsets = encode([text])
    hashes, lengths, flags = (np.empty(max(1, len(text)), dtype=dtype) for dtype in (np.uint64, np.int64, np.int64))
    count = _tokens(points, classes, 0, len(text), hashes, lengths, flags)
    words, at = [], 0
    for length in lengths[:count].tolist():  # tokens cover every non-space character, in order
        while text[at].isspace():
            at += 1
        words.append(text[at : at + length])
        at += length
    return words


def token_hashes(words: Sequence[str]) -> np.ndarray:
    """The hash of each word as a token, to compare with the tokens in the kernels; each word must be one token."""
    points, classes, offsets = encode(words)
    hashes, lengths, flags = (np.empty(max(1, len(points)), dtype=dtype) for dtype in (np.uint64, np.int64, np.int64))
    out = np.empty(len(words), dtype=np.uint64)
    for i, word in enumerate(words):
        if _tokens(points, classes, offsets[i], offsets[i + 1], hashes, lengths, flags) != 1:
            raise ValueError(f"{word!r} is not a single token")
        out[i] = hashes[0]
    return out


@njit(cache=True)
def _slot(keys, stamps, stamp, key) -> int:
    """Open-addressing slot of ``key`` in a table whose live entries carry ``stamp``; stale entries count as free."""
    mask = keys.size - 1
    slot = np.int64(key & np.uint64(mask))
    while stamps[slot] == stamp and keys[slot] != key:
        slot = (slot + 1) & mask
    return slot


@njit(cache=True)
def _segment_duplicates(points, classes, start, end, paragraphs, keys, stamps, stamp) -> tuple[int, int, int]:
    """(segments, segments repeating an earlier one, characters in those) of the text split as ``re.split`` does
    on ``\\n+`` (lines) or, with ``paragraphs``, on ``\\n{2,}`` after stripping surrounding whitespace."""
    if paragraphs:
        while start < end and classes[start] & SPACE:
            start += 1
        while end > start and classes[end - 1] & SPACE:
            end -= 1
    segments = dups = chars = 0
    i = piece = start
    while True:
        run = 0
        while i + run < end and points[i + run] == 10:
            run += 1
        at_end = i >= end
        if at_end or run >= (2 if paragraphs else 1):
            h = _combine(_fnv(points, piece, i), np.uint64(i - piece))
            slot = _slot(keys, stamps, stamp, h)
            segments += 1
            if stamps[slot] == stamp:
                dups += 1
                chars += i - piece
            else:
                stamps[slot], keys[slot] = stamp, h
            if at_end:
                return segments, dups, chars
            i += run
            piece = i
        else:
            i += max(run, 1)


@njit(cache=True)
def repetition_counts(points, classes, offsets, max_n, want_top, want_dup):
    """Per text, what the Gopher repetition rules compare with their thresholds:

    segments[doc]: paragraphs, repeated paragraphs, their characters, lines, repeated lines, their characters.
    top[doc, n] (n flagged in ``want_top``): characters of the most frequent n-gram (words joined by spaces) times
    its count; ties go to the n-gram seen first.
    dup[doc, n] (n flagged in ``want_dup``): characters (words joined without spaces) of n-grams that repeat an
    earlier one, scanning left to right and jumping past each repeat so overlapping repeats count once.
    """
    docs = offsets.size - 1
    segments = np.zeros((docs, 6), dtype=np.int64)
    top = np.zeros((docs, max_n + 1), dtype=np.int64)
    dup = np.zeros((docs, max_n + 1), dtype=np.int64)
    longest = _longest(offsets)
    hashes = np.empty(longest, dtype=np.uint64)
    lengths = np.empty(longest, dtype=np.int64)
    flags = np.empty(longest, dtype=np.int64)
    grams = np.empty(longest, dtype=np.uint64)
    prefix = np.zeros(longest + 1, dtype=np.int64)
    size = 1
    while size < 2 * longest + 2:
        size *= 2
    keys = np.zeros(size, dtype=np.uint64)
    counts = np.zeros(size, dtype=np.int64)
    firsts = np.zeros(size, dtype=np.int64)
    stamps = np.zeros(size, dtype=np.int64)
    stamp = 0
    for doc in range(docs):
        for part in range(2):
            stamp += 1
            found = _segment_duplicates(points, classes, offsets[doc], offsets[doc + 1], part == 0, keys, stamps, stamp)
            segments[doc, 3 * part : 3 * part + 3] = found
        tokens = _tokens(points, classes, offsets[doc], offsets[doc + 1], hashes, lengths, flags)
        for t in range(tokens):
            prefix[t + 1] = prefix[t] + lengths[t]
            grams[t] = hashes[t]
        for n in range(2, max_n + 1):
            positions = tokens - n + 1
            if positions <= 0:
                break
            for t in range(positions):
                grams[t] = _combine(grams[t], hashes[t + n - 1])
            if want_top[n]:
                stamp += 1
                best_count, best_first = 0, 0
                for t in range(positions):
                    slot = _slot(keys, stamps, stamp, grams[t])
                    if stamps[slot] != stamp:
                        stamps[slot], keys[slot], counts[slot], firsts[slot] = stamp, grams[t], 0, t
                    counts[slot] += 1
                    if counts[slot] > best_count or (counts[slot] == best_count and firsts[slot] < best_first):
                        best_count, best_first = counts[slot], firsts[slot]
                top[doc, n] = best_count * (prefix[best_first + n] - prefix[best_first] + n - 1)
            if want_dup[n]:
                stamp += 1
                t = 0
                while t < positions:
                    slot = _slot(keys, stamps, stamp, grams[t])
                    if stamps[slot] == stamp:
                        dup[doc, n] += prefix[t + n] - prefix[t]
                        t += n
                    else:
                        stamps[slot], keys[slot] = stamp, grams[t]
                        t += 1
    return segments, top, dup


@njit(cache=True)
def _shingle_hashes(points, classes, offsets, n) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the word n-gram shingles of each text (a text of ``n`` words or fewer is one shingle), flat, with
    row offsets: text ``i``'s shingles are ``hashes[rows[i]:rows[i + 1]]``. Words are runs of letters and digits."""
    docs = offsets.size - 1
    words = np.empty(_longest(offsets), dtype=np.uint64)
    out = np.empty(offsets[docs] + docs, dtype=np.uint64)
    rows = np.zeros(docs + 1, dtype=np.uint64)
    filled = 0
    for doc in range(docs):
        count = _words(points, classes, offsets[doc], offsets[doc + 1], words)
        spans = 0 if count == 0 else max(count - n + 1, 1)
        for t in range(spans):
            h = np.uint64(n)
            for k in range(t, min(t + n, count)):
                h = _combine(h, words[k])
            out[filled] = h
            filled += 1
        rows[doc + 1] = filled
    return out[:filled], rows


def word_shingles(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the word n-grams of each text, flat, and the row offsets into them (see ``_shingle_hashes``).

    Words are the lower-cased runs of letters and digits, so case, punctuation and spacing never make text new.
    """
    if n < 1:
        raise ValueError(f"shingles need n >= 1 words, got {n}")
    return _shingle_hashes(*encode([text.lower() for text in texts]), n)


@njit(cache=True)
def _table_insert(keys, values, used, key, value) -> None:
    slot = np.int64(key & np.uint64(keys.size - 1))
    while used[slot] and keys[slot] != key:
        slot = (slot + 1) & (keys.size - 1)
    if not used[slot]:  # the first value given for a key stays
        used[slot], keys[slot], values[slot] = True, key, value


@njit(cache=True)
def _table_get(keys, values, used, key) -> int:
    slot = np.int64(key & np.uint64(keys.size - 1))
    while used[slot]:
        if keys[slot] == key:
            return values[slot]
        slot = (slot + 1) & (keys.size - 1)
    return -1


class HashTable:
    """A read-mostly map from 64-bit hashes to small ints, probed by compiled code (a Python dict of millions of
    n-gram hashes costs ≈40 ns a probe from Python, per n-gram of every sample)."""

    def __init__(self, hashes: np.ndarray, values: np.ndarray) -> None:
        size = 2
        while size < 2 * len(hashes):
            size *= 2
        self.keys = np.zeros(size, dtype=np.uint64)
        self.values = np.full(size, -1, dtype=np.int64)
        self.used = np.zeros(size, dtype=np.bool_)
        _fill(self.keys, self.values, self.used, hashes.astype(np.uint64), values.astype(np.int64))

    def first_hits(self, hashes: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """For each row ``hashes[rows[i]:rows[i + 1]]``, the value of its first hash in the table, or -1."""
        return _first_hits(self.keys, self.values, self.used, hashes, rows)


@njit(cache=True)
def _fill(keys, values, used, hashes, given) -> None:
    for i in range(hashes.size):
        _table_insert(keys, values, used, hashes[i], given[i])


@njit(cache=True)
def _first_hits(keys, values, used, hashes, rows) -> np.ndarray:
    hits = np.full(rows.size - 1, -1, dtype=np.int64)
    for row in range(rows.size - 1):
        for i in range(rows[row], rows[row + 1]):
            value = _table_get(keys, values, used, hashes[i])
            if value >= 0:
                hits[row] = value
                break
    return hits


@njit(cache=True)
def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per LSH band: the hash of the band's index and its ``rows`` signature values."""
    keys = np.empty((signatures.shape[0], bands), dtype=np.uint64)
    for doc in range(signatures.shape[0]):
        for band in range(bands):
            h = np.uint64(band)
            for r in range(band * rows, (band + 1) * rows):
                h = _combine(h, np.uint64(signatures[doc, r]))
            keys[doc, band] = h
    return keys
