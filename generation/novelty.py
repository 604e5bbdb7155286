"""ROUGE-L novelty against a growing pool of texts: Self-Instruct's diversity rule, as a pure data structure.

Wang et al., 2023, "Self-Instruct", §2.3: a new instruction joins the task pool only when its ROUGE-L similarity with
every instruction already in the pool is below 0.7. Comparing against the whole pool is O(pool) per text, so
candidates are pre-selected with MinHash-LSH over word sets (32 bands × 2 rows: pairs with word Jaccard ≥ 0.3 collide
with probability above 0.94) and exact ROUGE-L is computed only for those.

Both self_instruct's own check (behind the run's shared state) and the ``novelty`` filter (in its index actor) hold
a ``NoveltyPool``; neither needs the other's actor.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rensa import RMinHash

_WORDS = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F-measure from the longest common subsequence of two token lists."""
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def rouge_l_bound(a_len: int, b_len: int) -> float:
    """The highest ROUGE-L two token lists of these lengths can have (their LCS is at most the shorter one): texts
    of very different lengths are never near, and need no quadratic comparison."""
    return 2 * min(a_len, b_len) / (a_len + b_len) if a_len and b_len else 0.0


class NoveltyPool:
    """Texts (with an id each) and an LSH index over their word sets.

    Args:
        threshold: a text is novel when its ROUGE-L with every pooled text is below this.
        bands, rows: the LSH candidate pre-selection.
        texts: (id, text) pairs the pool starts with.
    """

    def __init__(
        self, threshold: float = 0.7, bands: int = 32, rows: int = 2, texts: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.threshold, self.bands, self.rows = threshold, bands, rows
        self.ids: list[str] = []
        self.words: list[list[str]] = []
        self.buckets: dict[tuple[int, int], list[int]] = {}
        self.compared = 0  # exact ROUGE-L computations so far: the cost LSH and the length bound keep small
        self.add(texts)

    def __len__(self) -> int:
        return len(self.words)

    def _keys(self, words: list[str]) -> list[tuple[int, int]]:
        minhash = RMinHash(num_perm=self.bands * self.rows, seed=11)
        minhash.update(sorted(set(words)))
        digest = minhash.digest()
        return [(band, hash(tuple(digest[band * self.rows : (band + 1) * self.rows]))) for band in range(self.bands)]

    def add(self, texts: Iterable[tuple[str, str]]) -> None:
        """Pool ``texts`` without checking them (the pool's starting tasks, or texts a resumed run replays)."""
        for text_id, text in texts:
            words = tokens(text)
            if words:
                self._add(text_id, words)

    def _add(self, text_id: str, words: list[str]) -> None:
        self.ids.append(text_id)
        self.words.append(words)
        for key in self._keys(words):
            self.buckets.setdefault(key, []).append(len(self.words) - 1)

    def nearest(self, text: str) -> tuple[float, str | None]:
        """The highest ROUGE-L of ``text`` with a pooled text, and that text's id (0.0 and None when none is near)."""
        words = tokens(text)
        candidates = sorted({i for key in self._keys(words) for i in self.buckets.get(key, ())}) if words else []
        best, best_id = 0.0, None
        for i in candidates:
            if rouge_l_bound(len(words), len(self.words[i])) <= best:
                continue  # cannot beat the nearest found so far
            self.compared += 1
            score = rouge_l(words, self.words[i])
            if score > best:
                best, best_id = score, self.ids[i]
        return best, best_id

    def offer(self, text_id: str, text: str) -> tuple[float, str | None]:
        """``nearest``, and ``text`` joins the pool when it is novel (a text with no words never does)."""
        score, near = self.nearest(text)
        words = tokens(text)
        if words and score < self.threshold:
            self._add(text_id, words)
        return score, near
