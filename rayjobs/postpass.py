"""Derived runs: read a finished run, apply stages to its committed rows, write a new run at its own ``sink.uri``.

The source run is never rewritten. Its commit records are taken oldest first and grouped into blocks of whole
commits; each block becomes one commit of the derived run (the same commit protocol, so a killed post-pass resumes
exactly-once). Row ids, seeds and every untouched row (errors/, a recipe's own rejections) are carried over as they
are, so every seed of the source stays accounted for and rows join back by ``id``. No engine starts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rayjobs.commit import CONFIG, SUCCESS, Commit, load_commits, open_run
from rayjobs.pipeline import storage_options
from rayjobs.rows import REJECT
from rayjobs.sink import Sink

log = logging.getLogger("synthray")

BLOCK_ROWS = 4096  # source rows per derived commit: whole source commits are grouped up to about this many


@dataclass
class SourceRun:
    """A finished run as a post-pass reads it."""

    sink: Sink
    record: dict[str, Any]  # its run.json
    fingerprint: dict[str, Any]
    commits: list[Commit]

    @property
    def config(self) -> dict[str, Any]:
        return self.record["config"]

    @property
    def seed_ids(self) -> list[str]:
        return [seed for commit in self.commits for seed in commit.seed_ids]


def open_source(section: Mapping[str, Any], storage_options: dict[str, Any]) -> SourceRun:
    """The finished run at ``src.uri``; one without ``_SUCCESS`` is refused (its rows are not final yet)."""
    uri = section.get("uri")
    if not uri or uri == "???":
        raise ValueError("src.uri is required: the finished run to read (a local path or s3://...)")
    sink = Sink(str(uri), storage_options)
    if not sink.exists(SUCCESS):
        raise ValueError(
            f"src.uri {uri} holds no finished run ({SUCCESS} is missing): finish it first by rerunning its command, "
            "then run the post-pass"
        )
    record = json.loads(sink.read_text("run.json"))
    fingerprint = json.loads(sink.read_text(CONFIG)).get("fingerprint", {})
    return SourceRun(sink, record, fingerprint, load_commits(sink))


def derived_config(config: Mapping[str, Any], source: SourceRun, postpass: str, **sections: Any) -> dict[str, Any]:
    """A derived run's config: the source run's recipe, model and source (what made the rows); this pass's sink,
    cluster and ``sections`` (its filters, student...); ``src`` naming the run read, its fingerprint and the pass
    (all part of this run's fingerprint)."""
    return {
        **source.config,
        "run": {**source.config.get("run", {}), **config["run"]},
        "sink": config["sink"],
        "cluster": config["cluster"],
        **sections,
        "src": {**config["src"], "fingerprint": source.fingerprint, "postpass": postpass},
    }


def open_derived(derived: Mapping[str, Any], source: SourceRun) -> tuple[Sink, list[Commit]]:
    """The derived run's sink, ready for this attempt, and the commits of its earlier attempts; the source run itself
    as the sink is refused."""
    section = derived["sink"]
    sink = Sink(section["uri"], storage_options(section), float(section.get("retry_s", 120)))
    if sink.uri.rstrip("/") == source.sink.uri.rstrip("/"):
        raise ValueError(f"sink.uri {sink.uri} is the source run itself: a post-pass writes a new run elsewhere")
    return sink, open_run(sink, derived, bool(derived["run"].get("overwrite", False)))


def blocks(commits: list[Commit], rows: int = BLOCK_ROWS) -> list[list[Commit]]:
    """Consecutive commits grouped until a group holds about ``rows`` rows: deterministic, so a resumed post-pass
    forms the same blocks."""
    grouped, current, held = [], [], 0
    for commit in commits:
        current.append(commit)
        held += sum(shard["rows"] for shard in commit.shards)
        if held >= rows:
            grouped.append(current)
            current, held = [], 0
    if current:
        grouped.append(current)
    return grouped


class SourceRows:
    """Ray Data UDF: a block of source commits (their names) → their rows in the derived schema, ``status`` set for
    the filters: kept rows and rows a *filter* of the source run rejected are ``ok`` again; a recipe's rejections
    stay ``rejected``; errors stay ``error``."""

    def __init__(
        self, *, uri: str, storage_options: dict[str, Any], schema: pa.Schema, source_steps: list[str]
    ) -> None:
        self.sink, self.schema, self.source_steps = Sink(uri, storage_options), schema, set(source_steps)

    def __call__(self, batch: pa.Table) -> pa.Table:
        tables = []
        for shards in batch.column("shards").to_pylist():
            for shard in json.loads(shards):
                tables.append(self._rows(self.sink.read_table(shard["path"]), shard["kind"]))
        return pa.concat_tables(tables) if tables else self.schema.empty_table()

    def _rows(self, table: pa.Table, kind: str) -> pa.Table:
        count = table.num_rows
        status = {"data": "ok", "rejected": "rejected", "errors": "error"}[kind]
        columns = {"status": pa.array([status] * count, pa.string())}
        if kind == "rejected":
            refilter = pc.is_in(table["rejected_by"], value_set=pa.array(sorted(self.source_steps), pa.string()))
            refilter = pc.fill_null(refilter, False)
            columns["status"] = pc.if_else(refilter, "ok", "rejected")
            for name, _ in REJECT:  # a row the filters see again has no verdict yet
                columns[name] = pc.if_else(refilter, pa.scalar(None, pa.string()), table[name])
        arrays = []
        for field in self.schema:
            if field.name in columns:
                arrays.append(columns[field.name].cast(field.type))
            elif field.name in table.column_names:
                arrays.append(table[field.name].cast(field.type))
            else:  # a column this kind does not keep (errors' reject fields) or a new filter's, not yet filled
                arrays.append(pa.nulls(count, field.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def plan_items(source: SourceRun, covered: set[str], block_rows: int = BLOCK_ROWS) -> tuple[list[dict[str, Any]], int]:
    """One item per block of source commits whose seeds the derived run has not committed yet, and the number of
    seeds already committed."""
    items, done = [], 0
    for index, group in enumerate(blocks(source.commits, block_rows)):
        seeds = {seed for commit in group for seed in commit.seed_ids}
        if seeds and seeds <= covered:
            done += len(seeds)
            continue
        shards = [shard for commit in group for shard in commit.shards]
        items.append({"block": index, "shards": json.dumps(shards)})
    return items, done


def source_summary(source: SourceRun) -> dict[str, Any]:
    """What the derived run's report and run.json say of the run it read."""
    summary = source.record.get("summary", {})
    keys = (
        "seeds_read",
        "generated",
        "kept",
        "rejected",
        "errors",
        "rejected_by",
        "errors_by_stage",
        "filters",
        "wall_s",
    )
    return {
        "uri": source.sink.uri,
        "name": source.record.get("run", {}).get("name"),
        **{k: summary.get(k) for k in keys},
    }
