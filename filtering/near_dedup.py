"""Global streaming near-dedup: MinHash-LSH over word n-grams; first seen wins; band keys live in sharded actors.

Broder, 1997 (MinHash) and the LSH banding of Leskovec et al., "Mining of Massive Datasets", ch. 3; defaults follow
datatrove's MinHash dedup (5-gram word shingles, 14 bands × 8 rows = 112 permutations), which catches pairs above a
Jaccard similarity of about 0.7 with high probability. Shingles are hashed by compiled loops
(filtering/textstats.py) and signed in bulk by rensa (Rust).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rensa import RMinHash

from filtering import textstats
from filtering.base import Verdict
from filtering.exact_dedup import ShardedDedup, any_seen


class NearDedupFilter(ShardedDedup):
    """Drops a sample whose MinHash shares any LSH band with a sample seen earlier in the run.

    Args:
        fields: columns whose joined text is compared; defaults to the recipe's text fields.
        ngram: words per shingle.
        bands: LSH bands; more bands catch lower similarities.
        rows: signature rows per band; more rows demand higher similarity.
        seed: MinHash seed (the same seed must be used across a run and its resumes).
        num_shards: shard actors holding the band keys (set up by the pipeline).
        shards: the shard actor handles (set by the pipeline, not by config).
    """

    name = "near_dedup"

    def __init__(
        self,
        fields: Sequence[str] | None = None,
        ngram: int = 5,
        bands: int = 14,
        rows: int = 8,
        seed: int = 1,
        num_shards: int = 2,
        shards: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(fields, shards)
        if ngram < 1 or bands < 1 or rows < 1:
            raise ValueError(f"near_dedup needs ngram, bands and rows >= 1, got {ngram}, {bands}, {rows}")
        self.ngram, self.bands, self.rows, self.seed = ngram, bands, rows, seed
        self.num_shards = num_shards

    def band_keys(self, texts: Sequence[str]) -> list[list[int]]:
        """The LSH band keys of each text; a text without words has none (it is never a near-duplicate)."""
        hashes, rows = textstats.word_shingles(texts, self.ngram)
        signatures = RMinHash.digest_matrix_from_flat_token_hashes(hashes, rows, self.bands * self.rows, self.seed)
        keys = textstats.band_keys(np.array(signatures.to_rows(), dtype=np.uint32), self.bands, self.rows).tolist()
        return [band if end > start else [] for band, start, end in zip(keys, rows[:-1], rows[1:], strict=True)]

    def keep_batch(self, rows: list[dict[str, Any]]) -> list[Verdict]:
        if not rows:  # no signatures to stack (the compiled banding wants a 2-d array)
            return []
        keys = self.band_keys([self.text(row) for row in rows])
        return [(False, "near_duplicate") if dup else (True, None) for dup in any_seen(self.shards, keys)]
