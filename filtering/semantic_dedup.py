"""Global streaming semantic dedup: a row whose embedding has cosine ≥ ``threshold`` with a kept row is dropped.

Abbas et al., 2023, "SemDeDup": near-identical meaning, not shared n-grams, is what synthetic data repeats. The
vectors come from the embed stage (generation/embeddings.py); the kept ones live in one faiss index per run, in one
actor. Near neighbours share no hash key, so the index cannot be sharded by key the way exact and MinHash dedup
are: every check would have to query every shard, and "first seen wins" would need all of them to agree on an order.
One actor serialises the checks (first seen wins, across workers and within a batch) and answers a batch of 256 rows
against 100k kept ones in milliseconds (an exact inner-product search; ``index=hnsw`` for many millions).

Resume: the actor writes the vectors it keeps to the run as binary artifacts (``embeddings-<step>-NNNNNN``, a
segment per ``snapshot_rows`` kept rows, checksummed); a resumed run loads those of committed rows and embeds only
the committed rows written after the last segment.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import ray

from filtering.base import Filter, Verdict
from generation.embeddings import embedding_column, texts_of, vectors_of

INDEX_KINDS = ("flat", "hnsw")
Encode = Callable[[list[str]], np.ndarray]


@ray.remote(num_cpus=0)
class SemanticIndex:
    """The kept vectors of one step and their row ids; checks a batch against them and keeps the new ones.

    Args:
        threshold: cosine at or above which a vector is a duplicate of its nearest kept one.
        kind: ``flat`` (exact) or ``hnsw`` (approximate, for millions of rows).
        sink: (uri, storage_options) of the run, where kept vectors are written for a resume; None keeps none.
        name: the artifact name prefix of this step's segments.
        snapshot_rows: kept vectors per segment.
        pool: (ids, vectors) the index starts with (novelty's seed texts); never written.
    """

    def __init__(
        self,
        threshold: float,
        kind: str = "flat",
        sink: tuple[str, dict] | None = None,
        name: str = "embeddings",
        snapshot_rows: int = 1024,
        pool: tuple[list[str], np.ndarray] | None = None,
    ) -> None:
        import faiss

        faiss.omp_set_num_threads(1)  # a zero-CPU actor beside the engine: one core at most
        self.threshold, self.kind, self.name, self.snapshot_rows = threshold, kind, name, snapshot_rows
        self.index: Any = None
        self.ids: list[str] = []
        self.pending: list[tuple[list[str], np.ndarray]] = []
        self.store = None
        if sink is not None:
            from rayjobs.artifacts import ArtifactStore
            from rayjobs.sink import Sink

            self.store = ArtifactStore(Sink(*sink))
        self.segments = len(self.segment_names())
        if pool is not None and len(pool[0]):
            self._add(*pool)

    def _add(self, ids: list[str], vectors: np.ndarray) -> None:
        import faiss

        if self.index is None:
            dims = vectors.shape[1]
            self.index = (
                faiss.IndexFlatIP(dims)
                if self.kind == "flat"
                else faiss.IndexHNSWFlat(dims, 32, faiss.METRIC_INNER_PRODUCT)
            )
        self.index.add(vectors)
        self.ids.extend(ids)

    def nearest(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each vector, the cosine with its nearest kept vector and that vector's position (-1: none kept)."""
        if self.index is None or self.index.ntotal == 0:
            return np.full(len(vectors), -np.inf, dtype=np.float32), np.full(len(vectors), -1)
        sims, where = self.index.search(vectors, 1)
        return sims[:, 0], where[:, 0]

    def check_and_add(self, ids: list[str], vectors: np.ndarray) -> list[tuple[str, float] | None]:
        """For each row in order: None when it is new (it is then kept), else (the id of the kept row it repeats,
        their cosine). A row repeating one earlier in the same call is caught too."""
        sims, where = self.nearest(vectors)
        within = vectors @ vectors.T  # a batch is small: the pairwise cosines among its own rows
        verdicts: list[tuple[str, float] | None] = []
        kept: list[int] = []
        for i in range(len(ids)):
            best, match = float(sims[i]), (self.ids[where[i]] if where[i] >= 0 else None)
            if kept:
                j = kept[int(np.argmax(within[i, kept]))]
                if within[i, j] > best:
                    best, match = float(within[i, j]), ids[j]
            if match is not None and best >= self.threshold:
                verdicts.append((match, best))
            else:
                verdicts.append(None)
                kept.append(i)
        if kept:
            self.add([ids[i] for i in kept], vectors[kept])
        return verdicts

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        """Keep ``vectors`` without checking them (a replay of rows kept earlier) and write them for a resume."""
        self._add(ids, vectors)
        if self.store is not None:
            self.pending.append((ids, vectors))
            if sum(len(i) for i, _ in self.pending) >= self.snapshot_rows:
                self.flush()

    def flush(self) -> None:
        """Write the vectors kept since the last segment as one more segment (files first, manifest last)."""
        if self.store is None or not self.pending:
            return
        ids = [i for batch, _ in self.pending for i in batch]
        vectors = np.concatenate([v for _, v in self.pending])
        files = {"ids.json": json.dumps(ids).encode(), "vectors.npy": _npy(vectors)}
        self.store.write(f"{self.name}-{self.segments:06d}", files)
        self.segments += 1
        self.pending = []

    def segment_names(self) -> list[str]:
        if self.store is None:
            return []
        return [n for n in self.store.names() if n.rpartition("-")[0] == self.name]

    def restore(self, ids: list[str]) -> list[str]:
        """Load the written vectors of ``ids`` (the committed rows this step kept); returns the ids no segment holds
        (written after the last one): the caller embeds those and ``add``s them."""
        wanted = set(ids)
        found: set[str] = set()
        for name in self.segment_names():
            files = self.store.read(name) if self.store is not None else None
            if files is None:  # damaged: its rows are embedded again
                continue
            segment_ids = json.loads(files["ids.json"])
            vectors = np.load(io.BytesIO(files["vectors.npy"]), allow_pickle=False)
            take = [k for k, i in enumerate(segment_ids) if i in wanted and i not in found]
            if take:
                self._add([segment_ids[k] for k in take], vectors[take])
                found.update(segment_ids[k] for k in take)
        return [i for i in ids if i not in found]

    def size(self) -> int:
        return len(self.ids)


def _npy(vectors: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    return buffer.getvalue()


class SemanticDedupFilter(Filter):
    """Drops a row whose embedding has cosine ≥ ``threshold`` with a row kept earlier anywhere in the run.

    Args:
        threshold: cosine similarity at which two rows say the same thing (0.95; README's filter table has what
            all-MiniLM-L6-v2 gives paraphrases).
        fields: columns whose joined text is embedded; defaults to the recipe's text fields.
        index: ``flat`` (exact search) or ``hnsw`` (approximate, for many millions of rows).
        snapshot_rows: kept vectors per segment written for a resume.
        shards: the index actor handle (set by the pipeline).
    """

    name = "semantic_dedup"
    needs_embedding = True

    def __init__(
        self,
        threshold: float = 0.95,
        fields: Sequence[str] | None = None,
        index: str = "flat",
        snapshot_rows: int = 1024,
        shards: Sequence[Any] | None = None,
    ) -> None:
        super().__init__(fields)
        if not 0.0 < float(threshold) <= 1.0:
            raise ValueError(f"semantic_dedup.threshold must be in (0, 1], got {threshold}")
        if index not in INDEX_KINDS:
            raise ValueError(f"semantic_dedup.index: {index!r} is not one of {list(INDEX_KINDS)}")
        self.threshold = float(threshold)
        self.index = list(shards or [None])[0]

    @property
    def column(self) -> str:
        return embedding_column(self.fields or ())

    @staticmethod
    def start_state(
        threshold: float = 0.95,
        index: str = "flat",
        snapshot_rows: int = 1024,
        step: str = "semantic_dedup",
        sink: tuple[str, dict] | None = None,
        **_: Any,
    ) -> list:
        return [SemanticIndex.remote(float(threshold), index, sink, f"embeddings-{step}", int(snapshot_rows))]

    def keep_batch(self, rows: list[dict[str, Any]]) -> list[Verdict]:
        if self.index is None:
            raise RuntimeError("semantic_dedup has no index actor: the pipeline must start it first")
        return check_rows(self.index, rows, self.column)

    def restore(self, rows: Sequence[Mapping[str, Any]], encode: Encode) -> dict[str, int]:
        """Put the committed rows this step kept back in its index: their written vectors, the rest embedded again."""
        return restore_index(self.index, rows, self.fields or (), encode)


def check_rows(index: Any, rows: Sequence[Mapping[str, Any]], column: str) -> list[Verdict]:
    """Check ``rows`` (their vectors in ``column``) against ``index`` (a SemanticIndex): a repeat is dropped with the
    kept row's id and the cosine in its reason."""
    if not rows:
        return []
    found = ray.get(index.check_and_add.remote([str(r["id"]) for r in rows], vectors_of(rows, column)))
    return [(True, None) if f is None else (False, f"cosine {f[1]:.3f} to {f[0]}") for f in found]


def restore_index(
    index: Any, rows: Sequence[Mapping[str, Any]], fields: Sequence[str], encode: Encode
) -> dict[str, int]:
    """Restore ``index`` (a SemanticIndex) with ``rows``: returns how many came from segments and how many were
    embedded again."""
    ids = [str(r["id"]) for r in rows]
    missing = set(ray.get(index.restore.remote(ids)))
    again = [r for r in rows if str(r["id"]) in missing]
    if again:
        ray.get(index.add.remote([str(r["id"]) for r in again], encode(texts_of(again, fields))))
    return {"from_segments": len(rows) - len(again), "embedded": len(again)}
