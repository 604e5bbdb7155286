"""Seed sources: the built-in task set, or JSONL/Parquet files (local path, directory, glob, or s3://).

The driver reads seeds before any engine starts, so a missing or unreadable file stops the run at once with the
file's name. Each seed becomes ``(seed_id, seed)`` where ``seed`` is the row as JSON: files with different
columns flow through one schema, and a line that is not valid JSON travels as-is to become an ``errors/`` row.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from generation.seeds import DEFAULT_SET, builtin_seeds
from rayjobs.rows import SEED_SCHEMA

FORMATS = {"jsonl": (".jsonl", ".json", ".jsonl.gz"), "parquet": (".parquet",)}


def _remap(row: dict[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    """Rename source columns onto the fields recipes read (``source.columns: {prompt: instruction}``)."""
    return {columns.get(k, k): v for k, v in row.items()}


def _seed_id(row: dict[str, Any], file_label: str, line: int) -> str:
    value = row.get("id")
    return str(value) if value not in (None, "") else f"{file_label}:{line}"


def list_files(uri: str, fmt: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str, list[str]]:
    """(filesystem, root, files) for a file, a directory or a glob; bookkeeping files (``_*``, ``.*``) skipped."""
    fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
    if any(ch in path for ch in "*?["):
        root, found = path.split("*", 1)[0].rsplit("/", 1)[0], fs.glob(path)
    elif fs.isdir(path):
        root, found = path, [p for p in fs.find(path) if p.endswith(FORMATS[fmt])]
    elif fs.exists(path):
        root, found = posixpath.dirname(path), [path]
    else:
        raise FileNotFoundError(f"source.uri {uri!r} does not exist")
    files = sorted(p for p in found if not posixpath.basename(p).startswith(("_", ".")))
    if not files:
        raise FileNotFoundError(f"source.uri {uri!r} matches no {fmt} files (looked for {FORMATS[fmt]})")
    return fs, root, files


def _jsonl_rows(fs: Any, path: str) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    with fs.open(path, "rb", compression="infer") as f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}: line {number} is not UTF-8 ({exc})") from exc
            if not text:
                continue
            try:
                row = json.loads(text)
            except ValueError:
                row = None
            yield number, row if isinstance(row, dict) else None, text


def _parquet_rows(fs: Any, path: str) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    try:
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
    for number, row in enumerate(table.to_pylist(), 1):
        yield number, row, ""


def iter_seeds(source: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(seed_id, seed JSON) for every seed of ``source``, in a stable order, up to ``source.limit``."""
    kind, limit = source.get("kind"), source.get("limit")
    columns = dict(source.get("columns") or {})
    if limit is not None and limit < 0:
        raise ValueError(f"source.limit must be >= 0 or null, got {limit}")
    count = 0
    if kind == "builtin":
        for task in builtin_seeds(source.get("dataset") or DEFAULT_SET):
            seed_id = str(task["id"])
            if limit is not None and count >= limit:
                return
            count += 1
            yield seed_id, json.dumps(_remap(task, columns), ensure_ascii=False)
        return
    if kind not in FORMATS:
        raise ValueError(f"unknown source.kind {kind!r}; valid choices: ['builtin', *{sorted(FORMATS)}]")
    if not source.get("uri"):
        raise ValueError(f"source={kind} needs source.uri (a file, directory, glob or s3:// URI)")
    fs, root, files = list_files(source["uri"], kind, source.get("storage_options"))
    reader = _jsonl_rows if kind == "jsonl" else _parquet_rows
    for path in files:
        label = posixpath.relpath(path, root)
        rows_in_file = 0
        for number, row, raw in reader(fs, path):
            if limit is not None and count >= limit:
                return
            count += 1
            rows_in_file += 1
            if row is None:  # broken line: keep the raw text so the row lands in errors/ with the reason
                yield f"{label}:{number}", raw
            else:
                row = _remap(row, columns)
                yield _seed_id(row, label, number), json.dumps(row, ensure_ascii=False, default=str)
        if rows_in_file == 0:  # an empty part usually means a failed export upstream: say so rather than guess
            raise ValueError(f"{path}: the file holds no seeds (empty); remove it or point source.uri elsewhere")


def seed_tables(source: Mapping[str, Any], block_rows: int = 1024) -> list[pa.Table]:
    """All seeds as Arrow tables of at most ``block_rows`` rows (one Ray Data block each)."""
    tables, ids, seeds, seen = [], [], [], set()
    for seed_id, seed in iter_seeds(source):
        if seed_id in seen:  # row ids derive from seed ids, so a repeated one would repeat output ids
            raise ValueError(
                f"seed id {seed_id!r} appears more than once in source {source.get('uri') or 'builtin'}; "
                "ids must be unique (drop the id column to derive ids from file and line)"
            )
        seen.add(seed_id)
        ids.append(seed_id)
        seeds.append(seed)
        if len(ids) == block_rows:
            tables.append(pa.table([ids, seeds], schema=SEED_SCHEMA))
            ids, seeds = [], []
    if ids or not tables:
        tables.append(pa.table([ids, seeds], schema=SEED_SCHEMA))
    return tables
