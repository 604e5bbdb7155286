"""Semantic diversity of a run's kept rows, computed once at the end of the run on a sample and kept in run.json's
``quality.semantic`` (rebuilding the report needs no encoder).

Figures: mean pairwise cosine distance; the Vendi score (Friedman & Dieng, 2023: the exponential of the entropy of the
similarity matrix's eigenvalues, "the effective number of distinct items", from 1 to the sample size); clusters
(average-linkage agglomerative clustering cut at a cosine distance, a cluster count that does not need k) and the
entropy of their sizes; a 2-D PCA map of the sample coloured by the recipe's label or first balanced attribute; the
semantic duplicates the filters dropped, with examples.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filtering.base import as_text
from filtering.stage import build_filters
from generation.embeddings import KEPT_COLUMN, Encoder, texts_of

log = logging.getLogger("synthray")

MAP_POINTS = 500  # points drawn on the map (the figures use the whole sample)
EXAMPLES = 5
LABEL_COLUMNS = ("label", "intent", "category")  # a recipe without balance fields may still carry one of these


def enabled(config: Mapping[str, Any]) -> bool:
    return bool((config.get("embedding") or {}).get("figures"))


def evenly(n: int, size: int) -> list[int]:
    """``size`` positions spread evenly over ``n`` (all of them when n <= size)."""
    if n <= size:
        return list(range(n))
    return sorted({int(i * n / size) for i in range(size)})


def diversity(vectors: np.ndarray, cluster_distance: float) -> dict[str, Any]:
    """The diversity figures of unit-length ``vectors`` (one row each)."""
    from sklearn.cluster import AgglomerativeClustering
    from vendi_score import vendi

    n = len(vectors)
    figures: dict[str, Any] = {"n": n}
    if n < 2:
        return figures
    similarity = vectors @ vectors.T
    figures["mean_cosine_distance"] = round(float(1.0 - (similarity.sum() - np.trace(similarity)) / (n * (n - 1))), 4)
    figures["vendi_score"] = round(float(vendi.score_dual(vectors.astype(np.float64), normalize=True)), 2)
    clusters = AgglomerativeClustering(
        n_clusters=None, distance_threshold=cluster_distance, metric="cosine", linkage="average"
    ).fit_predict(vectors)
    sizes = np.bincount(clusters)
    shares = sizes / n
    entropy = float(-(shares * np.log(shares)).sum())
    figures["clusters"] = int(len(sizes))
    figures["cluster_distance"] = cluster_distance
    figures["cluster_entropy"] = round(abs(entropy), 4)
    figures["cluster_entropy_normalized"] = round(entropy / math.log(len(sizes)), 4) if len(sizes) > 1 else 0.0
    figures["largest_clusters"] = sorted(sizes.tolist(), reverse=True)[:10]
    return figures


def pca_map(vectors: np.ndarray, labels: Sequence[str] | None) -> dict[str, Any] | None:
    """2-D PCA coordinates of up to MAP_POINTS vectors, with their labels when there are any."""
    from sklearn.decomposition import PCA

    if len(vectors) < 3:
        return None
    keep = evenly(len(vectors), MAP_POINTS)
    pca = PCA(n_components=2, random_state=0).fit(vectors)
    points = np.round(pca.transform(vectors[keep]), 4).tolist()
    return {
        "points": points,
        "labels": [labels[i] for i in keep] if labels is not None else None,
        "explained_variance": [round(float(v), 4) for v in pca.explained_variance_ratio_],
    }


def label_column(table: pa.Table, balance_fields: Sequence[str]) -> str | None:
    for name in (*balance_fields, *LABEL_COLUMNS):
        if name in table.column_names:
            return name
    return None


def semantic_steps(steps: Mapping[str, Any], text_fields: Sequence[str]) -> list[str]:
    return [step for step, filt in build_filters(steps, text_fields) if getattr(filt, "needs_embedding", False)]


def duplicates(
    summary: Mapping[str, Any], steps: Sequence[str], tables: Mapping[str, pa.Table | None], fields: Sequence[str]
) -> dict[str, Any]:
    """How many rows the semantic steps dropped, and examples: the dropped text beside the kept one it repeats."""
    funnel = {f["step"]: f for f in summary.get("filters") or []}
    found = {step: int(funnel.get(step, {}).get("dropped", 0)) for step in steps}
    rejected = tables.get("rejected")
    if rejected is None or not rejected.num_rows or not steps:
        return {"dropped": found, "examples": []}
    dropped = rejected.filter(pc.is_in(rejected["rejected_by"], pa.array(list(steps), pa.string())))
    pairs = [(str(row.get("reject_reason") or "").rpartition(" to ")[2], row) for row in dropped[:EXAMPLES].to_pylist()]
    # The text of each kept row a drop names, where the report's read of the run has it (else none is shown).
    known = {}
    for table in tables.values():
        if table is not None and table.num_rows:
            named = table.filter(pc.is_in(table["id"], pa.array([kept_id for kept_id, _ in pairs], pa.string())))
            for row in named.select(["id", *[f for f in fields if f in table.column_names]]).to_pylist():
                known[row["id"]] = texts_of([row], fields)[0]
    examples = [
        {
            "step": row["rejected_by"],
            "id": row["id"],
            "text": texts_of([row], fields)[0][:300],
            "kept_id": kept_id,
            "kept_text": (known.get(kept_id) or "")[:300] or None,
            "reason": str(row.get("reject_reason") or ""),
        }
        for kept_id, row in pairs
    ]
    return {"dropped": found, "examples": examples}


def semantic_figures(
    config: Mapping[str, Any],
    tables: Mapping[str, pa.Table | None],
    summary: Mapping[str, Any],
    text_fields: Sequence[str],
    balance_fields: Sequence[str],
    encoder: Encoder,
) -> dict[str, Any]:
    """run.json's ``quality.semantic``: the figures of a sample of the kept rows (``tables``: the report's read of
    data/ and rejected/)."""
    embedding = config.get("embedding") or {}
    fields = list(embedding.get("fields") or text_fields)
    figures: dict[str, Any] = {"model": embedding.get("model"), "fields": fields}
    kept = tables.get("data")
    if kept is not None and kept.num_rows:
        rows = kept.take(evenly(kept.num_rows, int(embedding.get("sample", 1000))))
        if KEPT_COLUMN in rows.column_names and rows[KEPT_COLUMN].null_count == 0:
            vectors = np.asarray(rows[KEPT_COLUMN].to_pylist(), dtype=np.float32)  # embedded by the run already
        else:
            vectors = encoder.encode(
                texts_of(rows.select([f for f in fields if f in rows.column_names]).to_pylist(), fields)
            )
        figures.update(diversity(vectors, float(embedding.get("cluster_distance", 0.5))))
        column = label_column(rows, balance_fields)
        labels = [as_text(v)[:40] for v in rows[column].to_pylist()] if column else None
        figures["map"] = pca_map(vectors, labels)
        if figures["map"] is not None:
            figures["map"]["colour"] = column
    figures["duplicates"] = duplicates(
        summary, semantic_steps(config.get("filters") or {}, text_fields), tables, fields
    )
    return figures
