"""Output storage under ``sink.uri`` (local path or s3://) through one fsspec filesystem, and the shard writer.

Layout (see README): data/, rejected/, errors/ hold Parquet shards; run.json, report.html, README.md and
``_SUCCESS`` (written last) sit at the top; ``_synthray/`` holds the commit records (rayjobs/commit.py). Shard names
are unique per write, so two workers never collide. Every operation retries while the store is unreachable.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import posixpath
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rayjobs.commit import BOOKKEEPING, SUCCESS, summarize, write_commit
from rayjobs.rows import KINDS, columns_for

log = logging.getLogger("synthray")
T = TypeVar("T")


OUTPUT_DIRS = (*KINDS.values(), "artifacts")
TOP_FILES = ("run.json", "report.html", "README.md", SUCCESS)


class Sink:
    """Args:
    uri: local directory or ``s3://bucket/prefix``.
    storage_options: fsspec options (for s3: ``endpoint_url``, ``key``, ``secret``, ``client_kwargs``...).
    retry_s: how long an operation keeps retrying while the store is unreachable (connection refused or reset,
        timeouts, 5xx) before the error reaches the run.
    """

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None, retry_s: float = 120.0) -> None:
        if not uri:
            raise ValueError("sink.uri is empty: give a local directory or s3://bucket/prefix")
        self.uri = uri.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.retry_s = retry_s
        self.fs, self.root = fsspec.core.url_to_fs(self.uri, **self.storage_options)
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def _retrying(self, action: Callable[[], T]) -> T:
        """Run ``action``; on an error that means "the store is unreachable now", retry with backoff."""
        deadline, pause = time.monotonic() + self.retry_s, 0.5
        while True:
            try:
                return action()
            except Exception as exc:
                if not transient(exc) or time.monotonic() + pause > deadline:
                    raise
                log.warning("%s unreachable (%s: %s); retrying in %.1f s", self.uri, type(exc).__name__, exc, pause)
                time.sleep(pause)
                pause = min(pause * 2, 10.0)
                self.fs.invalidate_cache()

    def exists(self, name: str) -> bool:
        self.fs.invalidate_cache(self.path(name))  # other processes write here; never trust a cached listing
        return self._retrying(lambda: self.fs.exists(self.path(name)))

    def write_bytes(self, name: str, data: bytes) -> None:
        target = self.path(name)

        def put() -> None:
            self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
            with self.fs.open(target, "wb") as f:
                f.write(data)

        self._retrying(put)

    def write_atomic(self, name: str, data: bytes) -> None:
        """Readers see all of ``data`` under ``name`` or nothing: one PUT on object stores, rename on local disk."""
        if not self.local:
            self.write_bytes(name, data)
            return
        staged = f"{posixpath.dirname(name)}/.{posixpath.basename(name)}.{uuid.uuid4().hex}.tmp"
        self.write_bytes(staged, data)
        os.replace(self.path(staged), self.path(name))

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode("utf-8"))

    def read_bytes(self, name: str) -> bytes:
        def get() -> bytes:
            with self.fs.open(self.path(name), "rb") as f:
                return f.read()

        return self._retrying(get)

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode("utf-8")

    def read_table(self, name: str) -> pa.Table:
        return pq.read_table(io.BytesIO(self.read_bytes(name)))

    def write_table(self, kind: str, table: pa.Table) -> str:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        name = f"{kind}/part-{uuid.uuid4().hex}.parquet"
        self.write_bytes(name, buf.getvalue())
        return name

    def list(self, directory: str, suffix: str = "") -> list[str]:
        """Files under ``directory`` ending in ``suffix``, relative to the sink; ``_*`` and ``.*`` files skipped."""
        target = self.path(directory)
        self.fs.invalidate_cache(target)
        if not self._retrying(lambda: self.fs.exists(target)):
            return []
        found = self._retrying(lambda: self.fs.find(target))
        return sorted(
            posixpath.relpath(p, self.root)
            for p in found
            if p.endswith(suffix) and not posixpath.basename(p).startswith(("_", "."))
        )

    def remove(self, name: str, recursive: bool = False) -> None:
        """Remove ``name`` (a folder and all it holds with ``recursive``; "" is the sink's own folder); a missing
        one is no error."""

        def rm() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.path(name) if name else self.root, recursive=recursive)

        self._retrying(rm)

    def read_kind(self, kind: str, limit: int | None = None, shards: list[str] | None = None) -> pa.Table | None:
        tables, rows = [], 0
        for shard in self.list(kind, suffix=".parquet") if shards is None else shards:
            tables.append(self.read_table(shard))
            rows += tables[-1].num_rows
            if limit is not None and rows >= limit:
                break
        if not tables:
            return None
        table = pa.concat_tables(tables, promote_options="default")
        return table.slice(0, limit) if limit is not None else table

    def owned(self) -> bool:
        """Whether anything synthray writes is here already."""
        return any(self.exists(name) for name in (*OUTPUT_DIRS, *TOP_FILES))

    def clear(self) -> None:
        """Remove earlier outputs: the directories and top-level files synthray owns, and its bookkeeping."""
        for name in (*OUTPUT_DIRS, *TOP_FILES, BOOKKEEPING):
            if self.exists(name):
                self.remove(name, recursive=True)


# What S3 servers and clients say when the store is down, restarting or overloaded (5xx, refused connections).
_TRANSIENT_MESSAGES = (
    "connection refused",
    "connection reset",
    "could not connect",
    "internal error",
    "try again",
    "service unavailable",
    "slow down",
    "slowdown",
)


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the store is unreachable for now (worth retrying), rather than that the request is wrong."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ClientOSError",
        "ConnectTimeoutError",
    }:
        return True
    text = str(exc).lower()
    return any(mark in text for mark in _TRANSIENT_MESSAGES)


class ShardWriter:
    """Ray Data UDF: writes each batch's rows to data/, rejected/ and errors/ and commits them (rayjobs/commit.py);
    returns one manifest row per shard for the driver's progress counters."""

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
            ("tallies", pa.string()),
            ("roles", pa.string()),
        ]
    )

    def __init__(
        self,
        *,
        uri: str,
        storage_options: dict[str, Any],
        retry_s: float = 120.0,
        balance_fields: list[str] = (),
        tally_fields: list[str] = (),
    ) -> None:
        self.sink = Sink(uri, storage_options, retry_s)
        self.balance_fields, self.tally_fields = list(balance_fields), list(tally_fields)

    def __call__(self, batch: pa.Table) -> pa.Table:
        shards = []
        for status, kind in KINDS.items():
            part = batch.filter(pc.equal(batch["status"], status))
            if part.num_rows:
                part = part.select(columns_for(kind, batch.schema))
                summary = summarize(part, kind, self.balance_fields, self.tally_fields)
                shards.append({**summary, "path": self.sink.write_table(kind, part)})
        seed_ids = pc.unique(batch["seed_id"]).to_pylist()
        write_commit(self.sink, shards, seed_ids)
        manifest = [
            {
                **shard,
                "seed_ids": seed_ids if i == 0 else [],
                **{key: json.dumps(shard[key]) for key in ("reasons", "balance", "tallies", "roles")},
            }
            for i, shard in enumerate(shards)
        ]
        return pa.Table.from_pylist(manifest, schema=self.MANIFEST)
