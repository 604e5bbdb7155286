"""Novelty (Self-Instruct): drop a text whose ROUGE-L with anything already accepted reaches 0.7.

Wang et al., 2023, "Self-Instruct", §2.3: a new instruction is added to the pool only when its ROUGE-L similarity
with every existing instruction is below 0.7. The pool (``generation/novelty.py``: exact ROUGE-L on candidates that
MinHash-LSH pre-selects, so the cost per sample does not grow with the pool) lives in one actor per run, seeded with
``pool`` and grown by every accepted sample. self_instruct applies the same rule itself, before answering; this
filter brings it to any recipe's column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray

from filtering.base import Filter, Verdict, as_text
from filtering.semantic_dedup import Encode, SemanticIndex, check_rows, restore_index
from generation.embeddings import embedding_column
from generation.novelty import NoveltyPool

MEASURES = ("rouge_l", "embedding")


@ray.remote(num_cpus=0)
class NoveltyIndex:
    """The pool of accepted texts; checks and grows it one batch at a time."""

    def __init__(self, threshold: float, bands: int, rows: int, pool: Sequence[str] = ()) -> None:
        self.pool = NoveltyPool(threshold, bands, rows, ((f"pool:{i}", text) for i, text in enumerate(pool)))

    def check_and_add(self, items: list[tuple[str, str]]) -> list[float]:
        """For each (id, text), its ROUGE-L with the nearest pooled text (or the first found at the threshold);
        novel texts join the pool."""
        return [self.pool.offer(text_id, text)[0] for text_id, text in items]

    def stats(self) -> dict[str, int]:
        return {"pool": len(self.pool), "compared": self.pool.compared}


class NoveltyFilter(Filter):
    """Args:
    field: the column compared (Self-Instruct compares instructions).
    threshold: drop when the similarity with any pooled text reaches this.
    pool: texts the pool starts with (e.g. the seed instructions).
    measure: ``rouge_l`` (Self-Instruct's) or ``embedding`` (the cosine of the texts' embeddings).
    bands, rows: LSH candidate pre-selection (ROUGE-L).
    shards: the index actor handle (set by the pipeline).
    """

    name = "novelty"

    def __init__(
        self,
        field: str = "instruction",
        threshold: float = 0.7,
        pool: Sequence[str] = (),
        measure: str = "rouge_l",
        bands: int = 32,
        rows: int = 2,
        shards: Sequence[Any] | None = None,
    ) -> None:
        super().__init__([field])
        if measure not in MEASURES:
            raise ValueError(f"novelty.measure: {measure!r} is not one of {list(MEASURES)}")
        self.field, self.threshold, self.measure = field, threshold, measure
        self.needs_embedding = measure == "embedding"
        self.index = list(shards or [None])[0]

    @staticmethod
    def start_state(
        threshold: float = 0.7,
        bands: int = 32,
        rows: int = 2,
        pool: Sequence[str] = (),
        measure: str = "rouge_l",
        step: str = "novelty",
        sink: tuple[str, dict] | None = None,
        encode: Encode | None = None,
        **_: Any,
    ) -> list:
        if measure != "embedding":
            return [NoveltyIndex.remote(threshold, bands, rows, list(pool))]
        if pool and encode is None:
            raise RuntimeError("novelty with measure=embedding and a pool needs the encoder to embed the pool")
        start = ([f"pool:{i}" for i in range(len(pool))], encode(list(pool))) if pool else None
        return [SemanticIndex.remote(float(threshold), "flat", sink, f"embeddings-{step}", 1024, start)]

    def bind_fields(self, default_fields: Any) -> None:
        """The compared column is ``field``, not the recipe's text fields."""

    def keep_batch(self, rows: list[dict[str, Any]]) -> list[Verdict]:
        if self.index is None:
            raise RuntimeError("novelty has no index actor: the pipeline must start it first")
        if self.needs_embedding:
            return check_rows(self.index, rows, embedding_column([self.field]))
        items = [(str(r.get("id") or ""), as_text(r.get(self.field))) for r in rows]
        scores = ray.get(self.index.check_and_add.remote(items))
        return [(True, None) if s < self.threshold else (False, f"rouge_l_{s:.2f}") for s in scores]

    def restore(self, rows: Sequence[dict[str, Any]], encode: Encode) -> dict[str, int]:
        """By embedding (``needs_embedding``): the committed rows put back in the index, written vectors first."""
        return restore_index(self.index, rows, [self.field], encode)
