"""The HTTP engine against a real vLLM OpenAI-compatible server (the built-in SmolLM2 on 127.0.0.1) as a run's judge,
the dry-run engine generating (two vLLMs do not fit 2 cores): the output contract and the per-role figures."""

from __future__ import annotations

import asyncio
import json

import pytest

from generation.engines import build_engine
from rayjobs.pipeline import run
from tests.vllm_server import SERVED_NAME, vllm_server

pytestmark = pytest.mark.real_engine

SCHEMA = {
    "type": "object",
    "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]}},
    "required": ["winner"],
}


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    with vllm_server(tmp_path_factory.mktemp("vllm") / "server.log") as url:
        yield url


def test_the_engine_speaks_to_vllm_n_schema_stop_and_usage(server_url):
    engine = build_engine({"name": SERVED_NAME, "engine": "http", "base_url": server_url})

    async def calls():
        many = await engine.chat([{"role": "user", "content": "Name a color."}], n=3, max_tokens=16, temperature=1.0)
        constrained = await engine.chat([{"role": "user", "content": "A or B?"}], json_schema=SCHEMA, max_tokens=32)
        stopped = await engine.generate("1, 2, 3, 4,", max_tokens=32, stop=[" 7"], temperature=0.0)
        return many, constrained, stopped

    many, constrained, stopped = asyncio.run(calls())
    assert many.ok and len(many.texts) == 3 and 0 < many.completion_tokens <= 48 and many.prompt_tokens > 5
    assert constrained.ok and json.loads(constrained.text)["winner"] in ("A", "B", "tie")
    assert stopped.ok and " 7" not in stopped.text


def test_a_vllm_server_judges_pairs_generated_by_the_dry_run_engine(ray_session, dry_config, server_url):
    config = dry_config(
        "recipe=judge",
        "recipe.mode=pairwise",
        "source.dataset=answer_pairs",
        "+model@engines.judge=openai",
        f"engines.judge.name={SERVED_NAME}",
        f"engines.judge.base_url={server_url}",
        "engines.judge.max_concurrency=8",
        "engines.judge.price_per_mtok={prompt:0.1,completion:0.4}",
    )
    result = run(config)
    summary = result.summary
    assert summary["seeds_accounted"] == summary["seeds_read"] == 4
    judge = summary["roles"]["judge"]
    assert judge["model"] == SERVED_NAME and judge["engine"] == "http" and judge["calls"] == 8
    assert judge["prompt_tokens"] > 8 * 50 and judge["completion_tokens"] > 0 and judge["seconds"] > 0
    assert judge["cost_usd"] > 0 and summary["roles"]["generator"]["calls"] == 0
    assert 0.0 <= summary["position_consistency_rate"] <= 1.0
    tables = [result.sink.read_kind(kind) for kind in ("data", "rejected", "errors")]
    rows = [row for table in tables if table is not None for row in table.to_pylist()]
    judged = [r for r in rows if r.get("critiques")]
    assert judged, rows  # the 135M model's JSON is schema-constrained: every verdict parses
    for row in judged:
        assert len(row["critiques"]) == 2 and len(row["order_verdicts"]) == 2
        assert isinstance(row["position_consistent"], bool)
        assert [u["role"] for u in row["role_usage"]] == ["judge"] and row["role_usage"][0]["calls"] == 2
    assert sum(r["prompt_tokens"] for r in rows) == judge["prompt_tokens"]


def test_the_engine_scores_choices_through_the_servers_prompt_log_probabilities(server_url):
    engine = build_engine({"name": SERVED_NAME, "engine": "http", "base_url": server_url})
    obvious = [{"role": "user", "content": "Repeat exactly these two words and nothing else: technical problem"}]

    async def calls():
        scored = await engine.score(obvious, ["technical problem", "billing", "praise"])
        answered = await engine.chat(obvious, logprobs=True, max_tokens=8)
        return scored, answered

    scored, answered = asyncio.run(calls())
    assert scored.ok and sum(scored.scores.values()) == pytest.approx(1.0, abs=1e-6), scored
    assert max(scored.scores, key=scored.scores.get) == "technical problem", scored.scores
    assert answered.ok and len(answered.logprobs[0]) == answered.completion_tokens
