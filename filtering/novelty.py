"""Novelty (Self-Instruct): drop an instruction whose ROUGE-L with anything already accepted exceeds 0.7.

Wang et al., 2023, "Self-Instruct", §2.3: a new instruction is added to the pool only when its ROUGE-L similarity
with every existing instruction is below 0.7. Comparing against the whole pool is O(pool) per sample, so candidates
are pre-selected with MinHash-LSH over word sets (32 bands × 2 rows: pairs with word Jaccard ≥ 0.3 collide with
probability above 0.94), and exact ROUGE-L is computed only for those. The pool lives in one actor per run, seeded
with ``pool`` (e.g. the seed tasks) and grown by every accepted sample.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import ray
from rensa import RMinHash

from filtering.base import Filter, Verdict

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


@ray.remote(num_cpus=0)
class NoveltyIndex:
    """The pool of accepted texts with an LSH index over their word sets; checks and grows it one batch at a time."""

    def __init__(self, threshold: float, bands: int, rows: int, pool: Sequence[str] = ()) -> None:
        self.threshold, self.bands, self.rows = threshold, bands, rows
        self.texts: list[list[str]] = []
        self.buckets: dict[tuple[int, int], list[int]] = {}
        self.compared = 0
        for text in pool:
            self._add(tokens(text))

    def _keys(self, words: list[str]) -> list[tuple[int, int]]:
        minhash = RMinHash(num_perm=self.bands * self.rows, seed=11)
        minhash.update(sorted(set(words)))
        digest = minhash.digest()
        return [(band, hash(tuple(digest[band * self.rows : (band + 1) * self.rows]))) for band in range(self.bands)]

    def _add(self, words: list[str]) -> None:
        self.texts.append(words)
        for key in self._keys(words):
            self.buckets.setdefault(key, []).append(len(self.texts) - 1)

    def check_and_add(self, texts: list[str]) -> list[float]:
        """For each text, its highest ROUGE-L against the pool; texts below the threshold join the pool."""
        scores = []
        for text in texts:
            words = tokens(text)
            candidates = {i for key in self._keys(words) for i in self.buckets.get(key, ())} if words else set()
            self.compared += len(candidates)
            best = max((rouge_l(words, self.texts[i]) for i in candidates), default=0.0)
            scores.append(best)
            if words and best <= self.threshold:
                self._add(words)
        return scores

    def stats(self) -> dict[str, int]:
        return {"pool": len(self.texts), "compared": self.compared}


class NoveltyFilter(Filter):
    """Args:
    field: the column compared (Self-Instruct compares instructions).
    threshold: drop when ROUGE-L with any pooled text is above this.
    pool: texts the pool starts with (e.g. the seed instructions).
    bands, rows: LSH candidate pre-selection.
    shards: the index actor handle (set by the pipeline).
    """

    name = "novelty"

    def __init__(
        self,
        field: str = "instruction",
        threshold: float = 0.7,
        pool: Sequence[str] = (),
        bands: int = 32,
        rows: int = 2,
        shards: Sequence[Any] | None = None,
    ) -> None:
        super().__init__([field])
        self.field, self.threshold = field, threshold
        self.index = list(shards or [None])[0]

    @staticmethod
    def start_state(threshold: float = 0.7, bands: int = 32, rows: int = 2, pool: Sequence[str] = (), **_: Any) -> list:
        return [NoveltyIndex.remote(threshold, bands, rows, list(pool))]

    def bind_fields(self, default_fields: Any) -> None:
        """The compared column is ``field``, not the recipe's text fields."""

    def keep_batch(self, rows: list[dict[str, Any]]) -> list[Verdict]:
        if self.index is None:
            raise RuntimeError("novelty has no index actor: the pipeline must start it first")
        scores = ray.get(self.index.check_and_add.remote([str(r.get(self.field) or "") for r in rows]))
        return [(True, None) if s <= self.threshold else (False, f"rouge_l_{s:.2f}") for s in scores]
