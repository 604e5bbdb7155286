"""The generation stage: a Ray Data actor owning one engine, running the recipe for every seed of a batch.

Ray Data runs ``__call__`` as a coroutine, several batches at a time per actor, so every seed of every in-flight
batch has its engine calls queued at once and the engine's continuous batching stays full. Errors are rows:
a bad seed, a failed call or an unparsable output becomes an ``error`` row; the batch always completes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from typing import Any

import pyarrow as pa
import ray

from generation.engines import EngineUnavailable
from generation.recipes import Sample, build_recipe
from generation.roles import GENERATOR, build_engines
from generation.seeds import parse_seed
from generation.state import ENGINE_READY_AT, FIRST_SAMPLE_AT, GENERATED_SAMPLES, GENERATED_TOKENS, SharedState

log = logging.getLogger("synthray")

# How long the run's last batch waits for the other engine actors to stop their engines (an actor that died
# without restarting never reports; its engine is then killed with it, as it would have been anyway).
ENGINES_STOP_TIMEOUT_S = 30.0


def sample_id(run_name: str, seed_id: str, index: int) -> str:
    """Deterministic row id: the same run, seed and sample index always give the same id."""
    return hashlib.sha256(f"{run_name}\x00{seed_id}\x00{index}".encode()).hexdigest()[:24]


class GenerateActor:
    """Args:
    model: the ``model`` config (engine, weights, sampling).
    recipe: the ``recipe`` config (``name`` plus the recipe's parameters).
    run_name: part of every row id.
    run_seed: seeds the engine and each seed's private random generator.
    schema: the output row schema every batch is cast to.
    state: the run's ``RunStateActor`` (shared recipe state, throughput and start-up figures).
    cpus: the CPUs a local CPU engine may bind its compute threads to (None: leave affinity alone).
    corpus: the run's corpus sample (seed rows) for recipes with a run-wide phase over the corpus.
    roles: role → model config of the run's other roles (``engines.<role>``).
    budgets: model key → the run-wide ``RequestBudget`` actor of an HTTP engine.
    pools: model key → the replicas of the engine pool serving that model (rayjobs/resources.py).
    cache: the completion cache (rayjobs/cache.py): ``store``, role → engine ``identities``, ``refresh``; None: off.
    secrets: environment variable → value of the API keys the roles name, from the driver's environment (a worker
        started elsewhere would not have them).
    """

    def __init__(
        self,
        *,
        model: dict[str, Any],
        recipe: dict[str, Any],
        run_name: str,
        run_seed: int,
        schema: pa.Schema,
        state: Any = None,
        cpus: list[int] | None = None,
        corpus: list[dict[str, Any]] | None = None,
        roles: dict[str, dict[str, Any]] | None = None,
        budgets: dict[str, Any] | None = None,
        pools: dict[str, list[Any]] | None = None,
        secrets: dict[str, str] | None = None,
        cache: dict[str, Any] | None = None,
    ) -> None:
        started = time.perf_counter()
        if cpus:
            # The run's CPUs, before vLLM binds its compute threads to them: an actor restarted mid-run inherits the
            # few cores Ray's processes were moved to (rayjobs/cores.py), and vLLM would bind to those alone.
            os.sched_setaffinity(0, cpus)
        # Engine settings (VLLM_CPU_KVCACHE_SPACE, ...) are set here rather than through a Ray runtime_env, which
        # would force a fresh worker process per actor; vLLM reads them at engine start and its processes inherit them.
        os.environ.update({k: str(v) for k, v in (model.get("env") or {}).items()})
        for name, value in (secrets or {}).items():
            os.environ.setdefault(name, value)
        self.recipe = build_recipe(recipe)
        self.state, self.first_reported = state, False
        bind_state = getattr(self.recipe, "bind_state", None)
        if bind_state is not None:  # recipes with run-wide state (growing pools, once-per-run phases)
            bind_state(SharedState(state))
        if corpus is not None:  # recipes whose run-wide phase reads a sample of the run's own source
            self.recipe.bind_corpus(corpus)
        self.models = {GENERATOR: model, **(roles or {})}
        self.budgets = {key: RemoteBudget(handle) for key, handle in (budgets or {}).items()}
        self.pools = pools or {}
        self.engine = build_engines(self.models, run_seed, self.budgets, self.pools)
        self.model, self.stopper = model, None
        if state is not None:
            state.put_once.remote(ENGINE_READY_AT, time.time())
        # Printed, not logged: Ray forwards actor stdout to the driver, so users see when generation can start.
        others = ", ".join(f"{role} {config['name']}" for role, config in (roles or {}).items())
        print(
            f"synthray: engine {model['name']} ready in {time.perf_counter() - started:.1f} s"
            + (f" (other roles: {others})" if others else ""),
            flush=True,
        )
        self.model_name = model["name"]
        self.run_name, self.run_seed, self.schema = run_name, run_seed, schema
        self.cache = cache

    def __del__(self) -> None:
        # Outside Ray, or on an actor that never got a batch: the engine stops when the actor is dropped.
        if hasattr(self, "engine"):  # not when __init__ failed before building it
            self.stop_engine()

    def stop_engine(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.shutdown()

    async def _stop_engine_when_generated(self, engine_id: str) -> None:
        """Stops this actor's engine once the run's seeds are all generated, while the actor still runs: Ray kills
        an exiting worker's child processes before ``__del__`` can stop them (vLLM's shared memory then stays in
        /dev/shm, and a resource_tracker trace ends the run's output)."""
        await self.state.wait_generated.remote()
        self.stop_engine()
        self.state.engine_stopped.remote(engine_id)

    async def __call__(self, batch: pa.Table) -> pa.Table:
        if self.engine is None:  # Ray runs a batch again after the engines stopped (its output was lost)
            self.engine = await asyncio.to_thread(build_engines, self.models, self.run_seed, self.budgets, self.pools)
        if self.state is not None and self.stopper is None:  # armed here: it needs the actor's event loop
            # Ray's actor id survives a restart, so a restarted actor's engine is the same one to wait for.
            engine_id = ray.get_runtime_context().get_actor_id() if ray.is_initialized() else f"pid-{os.getpid()}"
            self.state.engine_started.remote(engine_id)
            self.stopper = asyncio.create_task(self._stop_engine_when_generated(engine_id))
        tokens: dict[str, int] = {}
        samples: dict[str, int] = {}

        async def timed(row: dict[str, Any]) -> list[dict[str, Any]]:
            rows = await self.run_seed_row(row)
            second = str(int(time.time()))  # when the seed's samples were done, for the throughput curve
            tokens[second] = tokens.get(second, 0) + sum(r.get("completion_tokens") or 0 for r in rows)
            samples[second] = samples.get(second, 0) + sum(r["status"] != "error" for r in rows)
            return rows

        seeds = batch.to_pylist()
        per_seed = await asyncio.gather(*(timed(row) for row in seeds))
        if self.cache is not None:  # this batch's new completions, as one pack, before its rows are committed
            await asyncio.to_thread(self.cache["store"].flush)
        if self.state is not None and batch.num_rows:
            self.state.accumulate.remote(GENERATED_TOKENS, tokens)  # fire and forget
            self.state.accumulate.remote(GENERATED_SAMPLES, samples)
            if await self.state.mark_generated.remote(batch.column("seed_id")[0].as_py(), batch.num_rows):
                # The run's last batch is held until every engine has stopped: Ray Data ends the actors once it
                # is returned.
                running = await self.state.wait_engines_stopped.remote(ENGINES_STOP_TIMEOUT_S)
                if running:
                    log.warning("engine actors %s did not stop within %.0f s", running, ENGINES_STOP_TIMEOUT_S)
        return self._table([row for rows in per_seed for row in rows], {s["seed_id"]: s["seed"] for s in seeds})

    def _table(self, rows: list[dict[str, Any]], seeds: dict[str, str]) -> pa.Table:
        """The batch's rows as one table. A value Arrow cannot hold (text UTF-8 cannot encode, a string in an integer
        column) would fail the whole batch, Ray would retry it and the run die: that row becomes an ``output`` error."""
        try:
            return pa.Table.from_pylist(rows, schema=self.schema)
        except _ARROW_ERRORS:
            pass
        storable = []
        for row in rows:
            try:
                pa.Table.from_pylist([row], schema=self.schema)
            except _ARROW_ERRORS as exc:
                row = self._unstorable(row, seeds[row["seed_id"]], exc)
            storable.append(row)
        return pa.Table.from_pylist(storable, schema=self.schema)

    def _unstorable(self, row: dict[str, Any], seed_json: str, exc: Exception) -> dict[str, Any]:
        """The error row standing for ``row``: lineage, tokens and seed kept, the recipe's fields (the bad value among
        them) left out and named."""
        bad = [
            name
            for name, value in row.items()
            if name in self.schema.names and not _fits(value, self.schema.field(name).type)
        ]
        what = ", ".join(f"{name}={_preview(row[name])}" for name in bad) or f"{type(exc).__name__}: {exc}"
        error = f"the sample cannot be stored ({what}): {type(exc).__name__}: {str(exc)[:200]}"
        kept = {k: row.get(k) for k in ("prompt_tokens", "completion_tokens", "role_usage")}
        return self._error(row["seed_id"], row["sample_index"], "output", error, seed_json, **kept)

    def _row(self, seed_id: str, index: int, **fields: Any) -> dict[str, Any]:
        return {
            "id": sample_id(self.run_name, seed_id, index),
            "seed_id": seed_id,
            "sample_index": index,
            "recipe": self.recipe.name,
            "model": self.model_name,
            **fields,
        }

    def _error(self, seed_id: str, index: int, stage: str, error: str, seed_json: str, **extra: Any) -> dict:
        return self._row(seed_id, index, status="error", stage=stage, error=error, seed=seed_json, **extra)

    async def run_seed_row(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        seed_id, seed_json = row["seed_id"], row["seed"]
        # The reader says why a seed cannot be used; parsed again here, a seed nested just under the parser's limit
        # in the driver can pass it on this deeper stack.
        seed, error = (None, row["error"]) if row.get("error") else parse_seed(seed_json)
        if seed is None:
            return [self._error(seed_id, 0, "input", f"seed unusable: {error}", seed_json)]
        missing = [f for f in self.recipe.required_fields if not isinstance(seed.get(f), str) or not seed[f].strip()]
        if missing:
            return [
                self._error(
                    seed_id,
                    0,
                    "input",
                    f"seed lacks required text field(s) {missing} for recipe {self.recipe.name!r}",
                    seed_json,
                )
            ]
        rng = random.Random(f"{self.run_seed}\x00{seed_id}")
        try:
            samples = await self.recipe.run(seed, self._engines_for(seed_id), rng)
        except EngineUnavailable:
            raise  # the task fails and Ray Data retries the batch; the seeds did nothing wrong
        except Exception as exc:  # a recipe bug on one seed must not lose the other seeds of the batch
            return [self._error(seed_id, 0, "recipe", f"{type(exc).__name__}: {exc}", seed_json)]
        if not samples:
            return [self._error(seed_id, 0, "recipe", "recipe produced no samples", seed_json)]
        if not self.first_reported and self.state is not None:  # fire and forget: start-up figure for run.json
            self.state.put_once.remote(FIRST_SAMPLE_AT, time.time())
            self.first_reported = True
        return [self._sample_row(seed_id, i, s, seed_json) for i, s in enumerate(samples)]

    def _engines_for(self, seed_id: str) -> Any:
        """The engines as this seed's recipe sees them: through the completion cache when the run has one."""
        if self.cache is None:
            return self.engine
        scope = f"{self.run_seed}\x00{seed_id}"
        return self.engine.cached(self.cache["store"], self.cache["identities"], scope, self.cache["refresh"])

    def _sample_row(self, seed_id: str, index: int, sample: Sample, seed_json: str) -> dict[str, Any]:
        tokens = {
            "prompt_tokens": sample.prompt_tokens,
            "completion_tokens": sample.completion_tokens,
            "role_usage": [{"role": role, **figures} for role, figures in sample.usage.items()],
        }
        if sample.error is not None:
            return self._error(seed_id, index, sample.stage, sample.error, seed_json, **sample.fields, **tokens)
        if sample.reject_reason is not None:  # the recipe's own check (a verifier, a self-correction) said no
            return self._row(
                seed_id,
                index,
                status="rejected",
                rejected_by=self.recipe.name,
                reject_reason=sample.reject_reason,
                **sample.fields,
                **tokens,
            )
        return self._row(seed_id, index, status="ok", **sample.fields, **tokens)


class RemoteBudget:
    """A ``RequestBudget`` actor seen as the local object an HTTP engine expects."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def acquire(self, tokens: int = 0) -> int:
        return await self.handle.acquire.remote(tokens)

    async def release(self, lease: int, used_tokens: int | None = None) -> None:
        await self.handle.release.remote(lease, used_tokens)


_ARROW_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError)


def _fits(value: Any, type_: pa.DataType) -> bool:
    try:
        pa.array([value], type=type_)
    except _ARROW_ERRORS:
        return False
    return True


def _preview(value: Any) -> str:
    """A short, printable, UTF-8-safe view of a bad value for the error message."""
    return ascii(value)[:120]
