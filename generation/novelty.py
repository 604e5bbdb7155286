"""ROUGE-L novelty against a growing pool of texts: Self-Instruct's diversity rule, as a pure data structure.

Wang et al., 2023, "Self-Instruct", §2.3: a new instruction joins the task pool only when its ROUGE-L similarity with
every instruction already in the pool is below 0.7. Comparing against the whole pool is O(pool) per text, so
candidates are pre-selected with MinHash-LSH over word sets (32 bands × 2 rows: pairs with word Jaccard ≥ 0.3 collide
with probability above 0.94) and exact ROUGE-L is computed only for those.

Candidates are compared most-similar first (by the number of LSH bands they share), at most ``max_candidates`` of
them, stopping at the first that reaches the threshold, with a compiled LCS; a crowded bucket contributes only its
``max_candidates`` most recent entries. On texts that share most of their words (templated tasks, the dry-run
engine's 20-word vocabulary) nearly the whole pool collides, and comparing against all of it made 20,000 dry-run
self_instruct seeds take over 15 minutes instead of one; the price of the bounds is that an old near-copy hidden in
crowded buckets can be missed.

Both self_instruct's own check (behind the run's shared state) and the ``novelty`` filter (in its index actor) hold
a ``NoveltyPool``; neither needs the other's actor.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import numpy as np
from numba import njit
from rensa import RMinHash

_WORDS = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


@njit(cache=True)
def _lcs(a: np.ndarray, b: np.ndarray) -> int:
    """Length of the longest common subsequence of two token-id arrays (one DP row)."""
    row = np.zeros(len(b) + 1, dtype=np.int32)
    for x in a:
        diagonal = 0
        for j in range(len(b)):
            above = row[j + 1]
            row[j + 1] = diagonal + 1 if x == b[j] else max(above, row[j])
            diagonal = above
    return row[len(b)]


@njit(cache=True)
def _f_measure(lcs: int, a_len: int, b_len: int) -> float:
    if lcs == 0:
        return 0.0
    precision, recall = lcs / a_len, lcs / b_len
    return 2.0 * precision * recall / (precision + recall)


@njit(cache=True)
def rouge_l_bound(a_len: int, b_len: int) -> float:
    """The highest ROUGE-L two token lists of these lengths can have (their LCS is at most the shorter one): texts
    of very different lengths are never near, and need no quadratic comparison."""
    return 2.0 * min(a_len, b_len) / (a_len + b_len) if a_len and b_len else 0.0


@njit(cache=True)
def _best_match(
    query: np.ndarray, flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, candidates: np.ndarray, stop_at: float
) -> tuple[float, int, int]:
    """(best ROUGE-L, its candidate, comparisons made) of ``query`` against the pooled texts ``candidates`` (token ids
    ``flat[starts[i]:ends[i]]``), in the given order, skipping texts the length bound rules out and stopping at the
    first score that reaches ``stop_at``."""
    best, best_index, compared = 0.0, -1, 0
    for i in candidates:
        length = ends[i] - starts[i]
        if rouge_l_bound(len(query), length) <= best:
            continue
        compared += 1
        score = _f_measure(_lcs(query, flat[starts[i] : ends[i]]), len(query), length)
        if score > best:
            best, best_index = score, i
            if best >= stop_at:
                break
    return best, best_index, compared


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F-measure from the longest common subsequence of two token lists."""
    if not a or not b:
        return 0.0
    ids: dict[str, int] = {}
    a_ids, b_ids = (np.array([ids.setdefault(x, len(ids)) for x in side], dtype=np.int32) for side in (a, b))
    return _f_measure(int(_lcs(a_ids, b_ids)), len(a), len(b))


class NoveltyPool:
    """Texts (with an id each) and an LSH index over their word sets.

    Args:
        threshold: a text is novel when its ROUGE-L with every pooled text is below this.
        bands, rows: the LSH candidate pre-selection.
        texts: (id, text) pairs the pool starts with.
        max_candidates: most pooled texts compared per check, those sharing the most LSH bands first.
    """

    def __init__(
        self,
        threshold: float = 0.7,
        bands: int = 32,
        rows: int = 2,
        texts: Iterable[tuple[str, str]] = (),
        max_candidates: int = 100,
    ) -> None:
        self.threshold, self.bands, self.rows, self.max_candidates = threshold, bands, rows, max_candidates
        self.ids: list[str] = []
        # Token ids of every pooled text, end to end (text i is flat[starts[i]:ends[i]]); grown by doubling.
        self.flat, self.used = np.zeros(1024, np.int32), 0
        self.starts, self.ends = np.zeros(64, np.int64), np.zeros(64, np.int64)
        self.vocabulary: dict[str, int] = {}
        self.buckets: dict[tuple[int, int], list[int]] = {}
        self.compared = 0  # exact ROUGE-L computations so far: the cost LSH and the length bound keep small
        self.add(texts)

    def __len__(self) -> int:
        return len(self.ids)

    def _keys(self, words: list[str]) -> list[tuple[int, int]]:
        minhash = RMinHash(num_perm=self.bands * self.rows, seed=11)
        minhash.update(sorted(set(words)))
        digest = minhash.digest()
        return [(band, hash(tuple(digest[band * self.rows : (band + 1) * self.rows]))) for band in range(self.bands)]

    def _encode(self, words: list[str]) -> np.ndarray:
        return np.array([self.vocabulary.setdefault(w, len(self.vocabulary)) for w in words], dtype=np.int32)

    def add(self, texts: Iterable[tuple[str, str]]) -> None:
        """Pool ``texts`` without checking them (the pool's starting tasks, or texts a resumed run replays)."""
        for text_id, text in texts:
            words = tokens(text)
            if words:
                self._add(text_id, words, self._keys(words))

    def _add(self, text_id: str, words: list[str], keys: list[tuple[int, int]]) -> None:
        index, encoded = len(self.ids), self._encode(words)
        while self.used + len(encoded) > len(self.flat):
            self.flat = np.concatenate([self.flat, np.zeros_like(self.flat)])
        if index == len(self.starts):
            self.starts, self.ends = (np.concatenate([a, np.zeros_like(a)]) for a in (self.starts, self.ends))
        self.flat[self.used : self.used + len(encoded)] = encoded
        self.starts[index], self.ends[index] = self.used, self.used + len(encoded)
        self.used += len(encoded)
        self.ids.append(text_id)
        for key in keys:
            self.buckets.setdefault(key, []).append(index)

    def _nearest(self, words: list[str], keys: list[tuple[int, int]], stop_at: float) -> tuple[float, str | None]:
        shared: Counter = Counter()
        for key in keys:  # a crowded bucket (words most texts share) gives only its most recent entries
            shared.update(self.buckets.get(key, [])[-self.max_candidates :])
        candidates = np.array([i for i, _ in shared.most_common(self.max_candidates)], dtype=np.int64)
        best, index, compared = _best_match(self._encode(words), self.flat, self.starts, self.ends, candidates, stop_at)
        self.compared += compared
        return best, (self.ids[index] if index >= 0 else None)

    def offer(self, text_id: str, text: str) -> tuple[float, str | None]:
        """``text`` joins the pool when novel (a text with no words never does). Returns the ROUGE-L and id of the
        nearest pooled text, or of the first found at the threshold when it is not novel."""
        words = tokens(text)
        if not words:
            return 0.0, None
        keys = self._keys(words)
        score, near = self._nearest(words, keys, stop_at=self.threshold)
        if score < self.threshold:
            self._add(text_id, words, keys)
        return score, near
