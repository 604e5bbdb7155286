"""``python -m rayjobs.refilter src.uri=... sink.uri=... filters=...``: a finished run's generated rows through other
filters, written as a new run (rayjobs/postpass.py); no engine starts.

Rows the source run kept and rows one of its *filters* rejected go through the new filters; a recipe's own
rejections stay rejected and errors/ are carried over. Stateful filters (dedup, novelty) are first-seen-wins, so the
rows reach them in the source's commit order through one filter actor.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import ray
from ray.data import ActorPoolStrategy

from filtering.stage import (
    FILTER_COUNTERS,
    FILTER_SECONDS,
    build_filters,
    filter_columns,
    step_class,
)
from generation.embeddings import KEPT_COLUMN, VECTOR_TYPE
from generation.recipes import Recipe, build_recipe
from generation.state import RunStateActor
from rayjobs.cli import entry_point
from rayjobs.commit import Heartbeat, attempts, reconcile
from rayjobs.pipeline import (
    RunResult,
    filter_and_write,
    finalize,
    init_ray,
    load_artifacts,
    save_artifact,
    start_filters,
    storage_options,
)
from rayjobs.postpass import (
    BLOCK_ROWS,
    SourceRows,
    SourceRun,
    derived_config,
    open_derived,
    open_source,
    plan_items,
    source_summary,
)
from rayjobs.resources import check_workers
from rayjobs.rows import row_schema
from rayjobs.stats import RunStats

log = logging.getLogger("synthray")


def block_rows(config: dict[str, Any]) -> int:
    rows = config.get("block_rows", BLOCK_ROWS)
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"block_rows must be a whole number of rows of at least 1, got {rows!r}")
    return rows


def rewriting_steps(steps: dict[str, Any]) -> list[str]:
    """Steps of a filter configuration that rewrite text (pii) rather than only judge it."""
    return [step for step, params in steps.items() if hasattr(step_class(step, params), "rewrite")]


def run(config: dict[str, Any], started: float | None = None) -> RunResult:
    """Re-filter the finished run at ``src.uri`` into ``sink.uri``; rerunning the same command resumes."""
    rows_per_block = block_rows(config)
    source = open_source(config["src"], storage_options({**config["src"], "uri": config["src"].get("uri")}))
    derived = derived_config(config, source, "refilter", filters=config["filters"] or {}, embedding=config["embedding"])
    recipe = build_recipe(derived["recipe"])
    steps = derived["filters"]
    text_fields = list(source.record["run"].get("text_fields") or recipe.text_fields)
    build_filters(steps, text_fields)  # a bad filter config fails here, before Ray starts
    # Vectors the source run kept (embedding.keep) stay in its rows.
    kept_vectors = {KEPT_COLUMN: VECTOR_TYPE} if (source.config.get("embedding") or {}).get("keep") else {}
    schema = row_schema({**recipe.columns, **filter_columns(steps), **kept_vectors})
    check_workers(derived["cluster"])
    notes = []
    rewritten = rewriting_steps(source.config.get("filters") or {})
    if rewritten:
        notes.append(
            f"the source run's {rewritten} rewrote text before these filters saw it: they judge the rewritten text"
        )
        log.warning("re-filtering %s: %s", source.sink.uri, notes[-1])
    sink, committed = open_derived(derived, source)
    covered = {seed for commit in committed for seed in commit.seed_ids}
    items, resumed = plan_items(source, covered, rows_per_block)
    log.info(
        "re-filtering %s (%d seeds) → %s with filters %s: %d blocks to do, %d seeds already committed",
        source.sink.uri,
        len(source.seed_ids),
        sink.uri,
        list(steps),
        len(items),
        resumed,
    )
    stats_started = started or time.time()
    with Heartbeat(sink):
        init_ray(derived["cluster"])
        shards, encoder = start_filters(derived, steps, text_fields, sink, committed)
        state = RunStateActor.remote(
            restored=load_artifacts(sink), persist=functools.partial(save_artifact, sink), expected_seeds=0
        )
        progress = RunStats(started=stats_started)
        if items:
            dataset = build_dataset(derived, source, items, recipe, schema, steps, text_fields, shards, state)
            for manifest in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                progress.add_manifest(manifest)
        progress.finish()
        stats = RunStats.from_commits(reconcile(sink), progress)
        seeds = len(source.seed_ids)
        summary = {**stats.to_dict(seeds), "attempt": attempts(sink), "resumed_seeds": resumed}
        values = ray.get(state.values.remote())
        summary["filters"] = stats.filter_funnel(list(steps), values.get(FILTER_SECONDS, {}))
        summary["filter_counters"] = values.get(FILTER_COUNTERS, {})
        missing = seeds - summary["seeds_accounted"]
        if missing:
            raise RuntimeError(f"{missing} of the source's {seeds} seeds have no row; rerun the same command")
        extra = {"source_run": source_summary(source), "postpass": "refilter", "notes": notes}
        finalize(sink, derived, summary, recipe, artifacts={}, extra=extra, encoder=encoder)
    return RunResult(sink, summary)


def build_dataset(
    config: dict[str, Any],
    source: SourceRun,
    items: list[dict[str, Any]],
    recipe: Recipe,
    schema: Any,
    steps: dict[str, Any],
    text_fields: list[str],
    shards: dict[str, list],
    state: Any,
) -> ray.data.Dataset:
    cluster = config["cluster"]
    context = ray.data.DataContext.get_current()
    context.target_max_block_size = None  # a block of whole commits is never split
    context.execution_options.preserve_order = True  # the stateful filters see rows in the source's commit order
    light = float(cluster.get("stage_cpus", 0.25))
    stateful = any(hasattr(step_class(s, p), "start_state") for s, p in steps.items())
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(
        SourceRows,
        batch_format="pyarrow",
        batch_size=None,
        fn_constructor_kwargs=dict(
            uri=source.sink.uri,
            storage_options=source.sink.storage_options,
            schema=schema,
            source_steps=list(source.config.get("filters") or {}),
        ),
        compute=ActorPoolStrategy(size=int(cluster.get("read_workers", 1))),
        num_cpus=light,
    )
    # First-seen-wins state needs one order: one filter actor then; stateless filters may run in parallel.
    return filter_and_write(ds, config, recipe, steps, text_fields, shards, state, 1 if stateful else None)


main = entry_point("refilter", run)


if __name__ == "__main__":
    main()
