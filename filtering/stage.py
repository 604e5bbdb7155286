"""The filter stage: applies the configured filters in order to the ``ok`` rows of each batch.

A dropped row stays in the stream with ``status=rejected``, ``rejected_by`` (the step name) and ``reject_reason``,
so the sink writes it to ``rejected/`` and nothing is lost. Later filters only see rows earlier ones kept, so a
dedup filter placed last never records a hash for a sample that another filter dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import ray

from filtering import FILTERS, Filter, filter_class
from generation.embeddings import KEPT_COLUMN, embedding_column, is_transient

log = logging.getLogger("synthray")

FILTER_SECONDS = "filter_seconds"
FILTER_COUNTERS = "filter_counters"


def _kind(step: str, params: Mapping[str, Any]) -> str:
    kind = params.get("kind", step)
    if kind not in FILTERS:
        raise ValueError(f"filters.{step}: unknown filter {kind!r}; valid choices: {sorted(FILTERS)}")
    return kind


def step_class(step: str, params: Mapping[str, Any] | None) -> type:
    """The filter class a step of a filter configuration runs."""
    return filter_class(_kind(step, params or {}))


def build_filters(
    steps: Mapping[str, Mapping[str, Any] | None], text_fields: Sequence[str], shards: Mapping[str, list] | None = None
) -> list[tuple[str, Filter]]:
    """(step name, filter) pairs in config order; ``shards`` carries the actor handles of stateful steps."""
    built = []
    for step, params in steps.items():
        params = dict(params or {})
        cls = step_class(step, params)
        params.pop("kind", None)
        if hasattr(cls, "start_state"):
            params["shards"] = (shards or {}).get(step)
        try:
            filt = cls(**params)
        except TypeError as exc:
            raise ValueError(f"filters.{step}: bad parameters for {cls.name!r}: {exc}") from exc
        filt.bind_fields(text_fields)
        built.append((step, filt))
    return built


def filter_columns(steps: Mapping[str, Mapping[str, Any] | None]) -> dict[str, pa.DataType]:
    """Columns the configured filters add to every row (e.g. ``pii_redactions``)."""
    columns: dict[str, pa.DataType] = {}
    for step, params in steps.items():
        columns.update(getattr(step_class(step, params), "columns", {}))
    return columns


def embedding_specs(filters: Sequence[tuple[str, Filter]]) -> dict[str, list[str]]:
    """The vectors the built ``filters`` compare: transient column → the fields embedded into it."""
    return {
        embedding_column(filt.fields or ()): list(filt.fields or ())
        for _, filt in filters
        if getattr(filt, "needs_embedding", False)
    }


def compares_embeddings(steps: Mapping[str, Mapping[str, Any] | None]) -> bool:
    """Whether any configured step compares embeddings (the encoder then decides what the run keeps)."""
    return any(getattr(filt, "needs_embedding", False) for _, filt in build_filters(steps, []))


def start_filter_state(
    steps: Mapping[str, Mapping[str, Any] | None],
    sink: tuple[str, dict] | None = None,
    encode: Callable[[list[str]], Any] | None = None,
) -> dict[str, list]:
    """Start the state actors of every stateful step (global across all filter workers of the run). ``sink`` (uri,
    options) is where a step may keep what a resume needs (semantic dedup's vectors); ``encode`` embeds texts a step
    starts with (novelty's pool, by embedding)."""
    started = {}
    for step, params in steps.items():
        cls = step_class(step, params)
        if hasattr(cls, "start_state"):
            options = {k: v for k, v in (params or {}).items() if k != "kind"}
            started[step] = cls.start_state(**options, step=step, sink=sink, encode=encode)
    return started


def replay_filter_state(
    steps: Mapping[str, Mapping[str, Any] | None],
    text_fields: Sequence[str],
    shards: Mapping[str, list],
    tables: Iterable[pa.Table],
    encode: Callable[[list[str]], Any] | None = None,
) -> int:
    """Feed committed rows to the stateful steps (dedup, novelty), oldest first, so a resumed run judges new samples
    against what the earlier attempts saw. A step saw a row if the row was kept or a later step dropped it. Only the
    stateful steps are built (a classifier or a benchmark index has nothing to restore). A step comparing embeddings
    is restored from the vectors it wrote, ``encode`` embedding the rest. Returns the rows replayed."""
    order = {step: i for i, step in enumerate(steps)}
    stateful = {step: params for step, params in steps.items() if hasattr(step_class(step, params), "start_state")}
    built = build_filters(stateful, text_fields, shards)
    by_vectors = {step: [] for step, filt in built if getattr(filt, "needs_embedding", False)}
    replayed = 0
    for table in tables if built else ():
        rows = table.select([c for c in table.column_names if c != KEPT_COLUMN]).to_pylist()
        for step, filt in built:
            seen = [r for r in rows if r.get("rejected_by") is None or order.get(r["rejected_by"], -1) > order[step]]
            if step in by_vectors:
                by_vectors[step].extend({"id": r["id"], **{f: r.get(f) for f in filt.fields or ()}} for r in seen)
                continue
            for start in range(0, len(seen), 1000):
                filt.keep_batch(seen[start : start + 1000])
        replayed += len(rows)
    for step, filt in built:
        if step in by_vectors:
            if encode is None:
                raise RuntimeError(f"filters.{step} compares embeddings: replaying it needs the encoder")
            counts = filt.restore(by_vectors[step], encode)
            log.info(
                "%s: %d kept vectors restored from the run's segments, %d embedded again",
                step,
                counts["from_segments"],
                counts["embedded"],
            )
    return replayed


class FilterActor:
    """Ray Data UDF applying the filter steps; stateless steps run here, stateful ones call their shard actors."""

    def __init__(
        self, *, steps: Mapping[str, Any], text_fields: Sequence[str], shards: Mapping[str, list], state: Any = None
    ) -> None:
        self.filters = build_filters(steps, text_fields, shards)
        self.state = state  # the run's RunStateActor: per-step seconds are added up there

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        pending = [i for i, row in enumerate(rows) if row["status"] == "ok"]
        seconds: dict[str, float] = {}
        for step, filt in self.filters:
            if not pending:
                break
            started = time.perf_counter()
            verdicts = filt.keep_batch([rows[i] for i in pending])
            seconds[step] = time.perf_counter() - started
            kept = []
            for i, (keep, reason) in zip(pending, verdicts, strict=True):
                if keep:
                    kept.append(i)
                else:
                    rows[i].update(status="rejected", rejected_by=step, reject_reason=reason)
            pending = kept
        if self.state is not None and seconds:
            counters = {
                f"{step}.{name}": n
                for step, filt in self.filters
                for name, n in getattr(filt, "drain_counters", dict)().items()
            }
            # Waited for (about a millisecond a batch): the driver reads these totals right after the last batch.
            ray.get(
                [
                    self.state.accumulate.remote(FILTER_SECONDS, seconds),
                    self.state.accumulate.remote(FILTER_COUNTERS, counters),
                ]
            )
        # The compared vectors are not part of the rows (embedding.keep writes its own column).
        schema = pa.schema([f for f in batch.schema if not is_transient(f.name)])
        return pa.Table.from_pylist(rows, schema=schema)
