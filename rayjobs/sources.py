"""Seed sources: the built-in task set, or JSONL/Parquet files (local path, directory, glob, or s3://).

The driver scans every seed before any engine starts, so a missing or unreadable file stops the run at once with
the file's name; it keeps only where each chunk of seeds starts, and Ray Data read tasks read the chunks where they
lie, so the driver's memory does not grow with the input. Each seed becomes ``(seed_id, seed, error)`` where
``seed`` is the row as JSON: files with different columns flow through one schema. A seed that cannot be used (a line
that is not a JSON object, text UTF-8 cannot encode) travels with ``error`` set, to become an ``errors/`` row; only a
whole file that cannot be read stops the run.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import json
import lzma
import posixpath
import random
import zlib
from array import array
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from generation.seeds import DEFAULT_SET, builtin_seeds, parse_seed
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


def _jsonl_rows(fs: Any, path: str, offset: int = 0, line: int = 1) -> Iterator[tuple[int, int, dict | None, str, str]]:
    """(byte offset, line number, row or None, raw text, why the line is no seed or "") of every non-blank line from
    ``offset`` (the start of line ``line``) on. Offsets are into the decompressed stream."""
    number = line - 1
    try:
        with fs.open(path, "rb", compression="infer") as f:
            if offset:
                f.seek(offset)
            position = offset
            while raw := f.readline():
                number, start, position = number + 1, position, position + len(raw)
                try:
                    text = raw.decode("utf-8").strip()
                except UnicodeDecodeError as exc:
                    raise ValueError(f"{path}: line {number} is not UTF-8 ({exc})") from exc
                if text:
                    row, error = parse_seed(text)
                    yield start, number, row, text, error and f"line {number}: {error}"
    except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        # A compressed file cut short (EOFError), not compressed as its name says (BadGzipFile), corrupt, unreadable.
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(
            f"{path}: cannot be read past line {number} ({type(exc).__name__}: {exc}); "
            "a compressed file may be cut short or not be what its name says"
        ) from exc


def _parquet_rows(
    fs: Any, path: str, offset: int = 0, line: int = 1
) -> Iterator[tuple[int, int, dict | None, str, str]]:
    """(row index, row number, row, "", "") from row index ``offset`` on, reading only the row groups needed."""
    try:
        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            sizes = (parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups))
            ends = list(itertools.accumulate(sizes))
            first = bisect.bisect_right(ends, offset)
            groups = list(range(first, len(ends)))
            skip = offset - (ends[first - 1] if first else 0)
            table = parquet.read_row_groups(groups).slice(skip) if groups else parquet.schema_arrow.empty_table()
    except Exception as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
    for index, row in enumerate(table.to_pylist()):
        yield offset + index, line + index, row, "", ""


@dataclass(frozen=True)
class SeedChunk:
    """A run of consecutive seeds of one file: one Ray Data block, read where it lies without reading the rest."""

    path: str  # the file ("" for the built-in set)
    label: str  # the path relative to the source root: derived seed ids are ``label:line``
    offset: int  # where the chunk starts: byte offset (JSONL), row index (Parquet, built-in set)
    line: int  # number of the chunk's first line or row
    rows: int  # seeds in the chunk, committed ones included
    skip: frozenset[int] = frozenset()  # line numbers of seeds an earlier attempt committed

    @property
    def pending(self) -> int:
        return self.rows - len(self.skip)


@dataclass
class SeedPlan:
    """What a run will read: every seed counted and checked, held as chunks rather than rows (the driver's memory
    does not grow with the input)."""

    seeds: int = 0  # all seeds of the source (up to source.limit)
    committed: int = 0  # seeds an earlier attempt committed, skipped
    chunks: list[SeedChunk] = field(default_factory=list)  # only chunks with pending seeds
    sample: list[tuple[str, str]] = field(default_factory=list)  # (seed_id, seed JSON) drawn for run-wide phases


def _records(source: Mapping[str, Any]) -> Iterator[tuple[str, str, int, int, str, str, str]]:
    """(path, label, offset, line, seed_id, seed JSON, error) of every seed of ``source`` in a stable order, up to
    ``source.limit``. ``seed`` is the row as JSON; a seed that cannot be used keeps its text (a broken line raw) and
    says why in ``error``, to become an ``errors/`` row."""
    kind, limit = source.get("kind"), source.get("limit")
    columns = dict(source.get("columns") or {})
    if limit is not None and limit < 0:
        raise ValueError(f"source.limit must be >= 0 or null, got {limit}")
    count = 0
    if kind == "builtin":
        for index, task in enumerate(builtin_seeds(source.get("dataset") or DEFAULT_SET)):
            if limit is not None and count >= limit:
                return
            count += 1
            yield "", "", index, index + 1, str(task["id"]), json.dumps(_remap(task, columns), ensure_ascii=False), ""
        return
    fs, root, files = _files(source)
    for path in files:
        label = posixpath.relpath(path, root)
        rows_in_file = 0
        for offset, number, row, raw, error in _READERS[kind](fs, path):
            if limit is not None and count >= limit:
                return
            count += 1
            rows_in_file += 1
            yield (path, label, offset, number, *_seed(row, raw, error, label, number, columns))
        if rows_in_file == 0:  # an empty part usually means a failed export upstream: say so rather than guess
            raise ValueError(f"{path}: the file holds no seeds (empty); remove it or point source.uri elsewhere")


_READERS = {"jsonl": _jsonl_rows, "parquet": _parquet_rows}


def _files(source: Mapping[str, Any]) -> tuple[Any, str, list[str]]:
    kind = source.get("kind")
    if kind not in FORMATS:
        raise ValueError(f"unknown source.kind {kind!r}; valid choices: ['builtin', *{sorted(FORMATS)}]")
    if not source.get("uri"):
        raise ValueError(f"source={kind} needs source.uri (a file, directory, glob or s3:// URI)")
    return list_files(source["uri"], kind, source.get("storage_options"))


def _seed(
    row: dict[str, Any] | None, raw: str, error: str, label: str, number: int, columns: Mapping[str, str]
) -> tuple[str, str, str]:
    """(seed_id, seed JSON, error): the JSON is always valid UTF-8, so one seed can never fail its whole block."""
    fallback = f"{label}:{number}"
    if row is None:  # broken line: keep the raw text so the row lands in errors/ with the reason
        return fallback, raw, error
    row = _remap(row, columns)
    seed_id = _seed_id(row, label, number)
    try:
        seed = json.dumps(row, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError) as exc:
        return fallback, raw, f"seed cannot be written as JSON ({type(exc).__name__}: {exc})"
    if not _encodable(seed_id):
        # The id is hashed and stored as text: the row keeps its place under the file:line id instead.
        escaped = json.dumps(row, ensure_ascii=True, default=str)
        return fallback, escaped, f"seed id {ascii(seed_id)} is text UTF-8 cannot encode; the seed is {fallback}"
    if not _encodable(seed):
        field = next((k for k, v in row.items() if not _encodable(json.dumps(v, ensure_ascii=False, default=str))), "")
        where = f" in field {field!r}" if field else ""
        why = f"seed holds text UTF-8 cannot encode{where} (a lone surrogate such as '\\ud800': half an escaped emoji?)"
        return seed_id, json.dumps(row, ensure_ascii=True, default=str), why
    return seed_id, seed, ""


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def iter_seeds(source: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(seed_id, seed JSON, error) for every seed of ``source``, in a stable order, up to ``source.limit``."""
    for *_, seed_id, seed, error in _records(source):
        yield seed_id, seed, error


def plan_seeds(
    source: Mapping[str, Any],
    block_rows: int,
    committed: Set[str] = frozenset(),
    sample_size: int = 0,
    sample_seed: int = 0,
) -> SeedPlan:
    """Read every seed once and cut the source into chunks of ``block_rows`` seeds, skipping ``committed`` ones; with
    ``sample_size``, also draw that many usable seeds uniformly at random (``plan.sample``, for run-wide phases).

    A missing, empty, unreadable or non-UTF-8 file, or a seed id used twice, stops the run here, naming it, before
    Ray or an engine starts. Only an 8-byte hash per seed id is held (for the repeat check), not the seeds.
    """
    plan, hashes = SeedPlan(), array("Q")
    reservoir = Reservoir(sample_size, random.Random(sample_seed))
    chunk: dict[str, Any] | None = None
    for path, label, offset, line, seed_id, seed, error in _records(source):
        if chunk is not None and (chunk["path"] != path or chunk["rows"] == block_rows):
            _close(plan, chunk)
            chunk = None
        if chunk is None:
            chunk = {"path": path, "label": label, "offset": offset, "line": line, "rows": 0, "skip": set()}
        chunk["rows"] += 1
        plan.seeds += 1
        hashes.append(_id_hash(seed_id))
        if seed_id in committed:
            chunk["skip"].add(line)
            plan.committed += 1
        if not error:
            reservoir.offer((seed_id, seed))
    if chunk is not None:
        _close(plan, chunk)
    _refuse_repeated_ids(source, np.frombuffer(hashes, dtype=np.uint64))
    plan.sample = reservoir.drawn()
    return plan


class Reservoir:
    """A uniform random sample of ``size`` items from a stream of unknown length, in one pass and ``size`` items of
    memory (reservoir sampling, Vitter's algorithm R); the same ``rng`` seed and stream give the same sample."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size, self.rng, self.seen, self.items = size, rng, 0, []

    def offer(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        elif self.size and (slot := self.rng.randrange(self.seen)) < self.size:
            self.items[slot] = item

    def drawn(self) -> list:
        """The sample in random order, so any prefix of it is a uniform sample too."""
        items = list(self.items)
        self.rng.shuffle(items)
        return items


def _close(plan: SeedPlan, chunk: dict[str, Any]) -> None:
    done = SeedChunk(**{**chunk, "skip": frozenset(chunk["skip"])})
    if done.pending:
        plan.chunks.append(done)


def _id_hash(seed_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(seed_id.encode(), digest_size=8).digest(), "little")


def _refuse_repeated_ids(source: Mapping[str, Any], hashes: np.ndarray) -> None:
    """Row ids derive from seed ids, so a repeated seed id would repeat output ids. The hashes find candidates in
    one sort; a second pass over the ids names the repeated one (and ignores a mere hash collision)."""
    ordered = np.sort(hashes)
    repeated = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
    if not repeated:
        return
    seen: set[str] = set()
    for seed_id, _, _ in iter_seeds(source):
        if _id_hash(seed_id) in repeated:
            if seed_id in seen:
                raise ValueError(
                    f"seed id {seed_id!r} appears more than once in source {source.get('uri') or 'builtin'}; "
                    "ids must be unique (drop the id column to derive ids from file and line)"
                )
            seen.add(seed_id)


def read_chunk(source: Mapping[str, Any], chunk: SeedChunk) -> pa.Table:
    """The pending seeds of ``chunk`` as one ``(seed_id, seed)`` table; runs in a Ray Data read task."""
    columns = dict(source.get("columns") or {})
    if chunk.path == "":
        tasks = builtin_seeds(source.get("dataset") or DEFAULT_SET)[chunk.offset : chunk.offset + chunk.rows]
        records = [
            (chunk.line + i, str(t["id"]), json.dumps(_remap(t, columns), ensure_ascii=False), "")
            for i, t in enumerate(tasks)
        ]
    else:
        # The chunk names its file: no listing of the source again (a directory on S3 would be listed per chunk).
        fs = fsspec.core.url_to_fs(source["uri"], **dict(source.get("storage_options") or {}))[0]
        rows = itertools.islice(_READERS[source["kind"]](fs, chunk.path, chunk.offset, chunk.line), chunk.rows)
        records = [
            (number, *_seed(row, raw, error, chunk.label, number, columns)) for _, number, row, raw, error in rows
        ]
    pending = [record[1:] for record in records if record[0] not in chunk.skip]
    return pa.table([list(column) for column in zip(*pending, strict=True)] or [[], [], []], schema=SEED_SCHEMA)


class SeedDatasource(Datasource):
    """The planned chunks as Ray Data read tasks, one block each, read by the workers rather than the driver."""

    def __init__(self, source: Mapping[str, Any], plan: SeedPlan) -> None:
        self.source, self.plan = dict(source), plan

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list:
        return [
            ReadTask(
                functools.partial(_read_task, self.source, chunk),
                BlockMetadata(num_rows=chunk.pending, size_bytes=None, exec_stats=None, input_files=(chunk.path,)),
                schema=SEED_SCHEMA,
            )
            for chunk in self.plan.chunks
        ]


def _read_task(source: Mapping[str, Any], chunk: SeedChunk) -> list[pa.Table]:
    return [read_chunk(source, chunk)]
