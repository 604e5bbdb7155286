"""Output storage under ``sink.uri`` (local path or s3://) through one fsspec filesystem, and the shard writer.

Layout (see README): data/, rejected/, errors/ hold Parquet shards; run.json, report.html, README.md and
``_SUCCESS`` (written last) sit at the top. Shard names are unique per write, so two workers never collide.
"""

from __future__ import annotations

import io
import json
import posixpath
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rayjobs.rows import KINDS, columns_for

SUCCESS = "_SUCCESS"
OUTPUT_DIRS = (*KINDS.values(), "artifacts")
TOP_FILES = ("run.json", "report.html", "README.md", SUCCESS)


class Sink:
    """Args:
    uri: local directory or ``s3://bucket/prefix``.
    storage_options: fsspec options (for s3: ``endpoint_url``, ``key``, ``secret``, ``client_kwargs``...).
    """

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None) -> None:
        if not uri:
            raise ValueError("sink.uri is empty: give a local directory or s3://bucket/prefix")
        self.uri = uri.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(self.uri, **self.storage_options)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        target = self.path(name)
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        with self.fs.open(target, "wb") as f:
            f.write(data)

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode("utf-8"))

    def read_text(self, name: str) -> str:
        with self.fs.open(self.path(name), "rb") as f:
            return f.read().decode("utf-8")

    def write_table(self, kind: str, table: pa.Table) -> str:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        name = f"{kind}/part-{uuid.uuid4().hex}.parquet"
        self.write_bytes(name, buf.getvalue())
        return name

    def shards(self, kind: str) -> list[str]:
        """Committed Parquet shards of ``kind``; bookkeeping files (``_*``, ``.*``) are never data."""
        directory = self.path(kind)
        if not self.fs.exists(directory):
            return []
        found = self.fs.find(directory)
        return sorted(p for p in found if p.endswith(".parquet") and not posixpath.basename(p).startswith(("_", ".")))

    def read_kind(self, kind: str, limit: int | None = None) -> pa.Table | None:
        tables, rows = [], 0
        for shard in self.shards(kind):
            with self.fs.open(shard, "rb") as f:
                tables.append(pq.read_table(f))
            rows += tables[-1].num_rows
            if limit is not None and rows >= limit:
                break
        if not tables:
            return None
        table = pa.concat_tables(tables, promote_options="default")
        return table.slice(0, limit) if limit is not None else table

    def clear(self) -> None:
        """Remove a previous attempt's outputs (the directories and top-level files synthray owns, nothing else)."""
        for name in (*OUTPUT_DIRS, *TOP_FILES):
            if self.exists(name):
                self.fs.rm(self.path(name), recursive=True)


class ShardWriter:
    """Ray Data UDF: writes each batch's rows to data/, rejected/ and errors/, returns one manifest row per shard."""

    MANIFEST = pa.schema(
        [
            ("kind", pa.string()),
            ("path", pa.string()),
            ("rows", pa.int64()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("seed_ids", pa.list_(pa.string())),
            ("reasons", pa.string()),
            ("balance", pa.string()),
        ]
    )

    def __init__(self, *, uri: str, storage_options: dict[str, Any], balance_fields: list[str] = ()) -> None:
        self.sink = Sink(uri, storage_options)
        self.balance_fields = list(balance_fields)

    def __call__(self, batch: pa.Table) -> pa.Table:
        manifest = []
        for status, kind in KINDS.items():
            part = batch.filter(pc.equal(batch["status"], status))
            if part.num_rows == 0:
                continue
            part = part.select(columns_for(kind, batch.schema))
            path = self.sink.write_table(kind, part)
            reason_col = {"rejected": "rejected_by", "errors": "stage"}.get(kind)
            reasons = _counts(part[reason_col]) if reason_col else {}
            balance = {f: _counts(part[f]) for f in self.balance_fields if kind == "data" and f in part.column_names}
            manifest.append(
                {
                    "kind": kind,
                    "path": path,
                    "rows": part.num_rows,
                    "prompt_tokens": pc.sum(part["prompt_tokens"]).as_py() or 0,
                    "completion_tokens": pc.sum(part["completion_tokens"]).as_py() or 0,
                    "seed_ids": pc.unique(part["seed_id"]).to_pylist(),
                    "reasons": json.dumps(reasons),
                    "balance": json.dumps(balance),
                }
            )
        return pa.Table.from_pylist(manifest, schema=self.MANIFEST)


def _counts(column: pa.ChunkedArray) -> dict[str, int]:
    """Value → count of a column, nulls left out (a label a row lacks is not a label)."""
    return {
        str(item["values"]): item["counts"]
        for item in pc.value_counts(column).to_pylist()
        if item["values"] is not None
    }
