"""The HTTP engine against a real OpenAI-compatible server on 127.0.0.1 that fails on demand."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from generation.engines import EngineUnavailable, build_engine
from generation.engines.budget import Bucket, RequestBudget
from generation.engines.http import HTTPEngine, retry_after
from tests.openai_server import FaultServer, serving

SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer"}, "critique": {"type": "string"}},
    "required": ["score", "critique"],
}


def engine_for(server: FaultServer, budget: RequestBudget | None = None, **options) -> HTTPEngine:
    model = {"name": server.model, "engine": "http", "base_url": server.base_url, "max_retries": 4, **options}
    return build_engine(model, budget=budget)


def ask(engine: HTTPEngine, content: str = "hello", **kwargs):
    return asyncio.run(engine.chat([{"role": "user", "content": content}], **kwargs))


def test_chat_and_generate_return_texts_and_the_servers_usage():
    with serving(FaultServer()) as server:
        engine = engine_for(server)
        done = ask(engine, "say something", n=3, max_tokens=20)
        prompt = asyncio.run(engine.generate("once upon a time", max_tokens=20))
    assert done.ok and len(done.texts) == 3 and len(set(done.texts)) == 3
    assert done.prompt_tokens > 0 and done.completion_tokens == sum(len(t.split()) for t in done.texts)
    assert prompt.ok and prompt.text and server.seen.bodies[-1]["prompt"] == "once upon a time"
    assert server.seen.bodies[0]["n"] == 3 and server.seen.bodies[0]["max_tokens"] == 20


def test_a_server_that_ignores_n_is_asked_again_for_the_rest():
    with serving(FaultServer(honour_n=False)) as server:
        done = ask(engine_for(server), n=3)
    assert done.ok and len(done.texts) == 3
    assert [b["n"] for b in server.seen.bodies] == [3, 2, 1]


def test_json_schema_goes_as_response_format_and_stop_strings_are_sent():
    with serving(FaultServer()) as server:
        done = ask(engine_for(server), json_schema=SCHEMA, stop=["\n\n"])
    body = server.seen.bodies[0]
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA and body["stop"] == ["\n\n"]
    assert set(json.loads(done.text)) == {"score", "critique"}


def test_a_server_refusing_response_format_gets_the_schema_in_the_prompt_and_the_reply_is_validated():
    planted = 'Verdict: {"score": 7, "critique": "clear"} and some chatter'
    with serving(FaultServer(response_format=False, echo=True)) as server:
        engine = engine_for(server)
        done = ask(engine, planted, json_schema=SCHEMA)
        wrong = ask(engine, 'Verdict: {"score": "high"}', json_schema=SCHEMA)
    assert done.ok and json.loads(done.text) == {"score": 7, "critique": "clear"}
    assert "JSON schema" in server.seen.bodies[-1]["messages"][-1]["content"]
    assert "response_format" not in server.seen.bodies[-1]
    assert not wrong.ok and "does not match the JSON schema" in wrong.error


@pytest.mark.parametrize("fault", ["429", "500", "malformed", "drop", "timeout"])
def test_transient_failures_are_retried_and_counted(fault):
    with serving(FaultServer(faults={0: fault}, every=1000, hang_s=3.0)) as server:
        started = time.perf_counter()
        done = ask(engine_for(server, timeout_s=1.0))
        took = time.perf_counter() - started
    assert done.ok and done.retries == 1, done.error
    if fault == "429":  # Retry-After: 0.2 s is honoured
        assert took >= 0.2


def test_another_4xx_is_an_error_value_with_the_status_and_the_servers_message():
    with serving(FaultServer()) as server:
        wrong = build_engine({"name": "m", "engine": "http", "base_url": server.base_url + "/nowhere"})
        done = ask(wrong)
    assert not done.ok and done.retries == 0
    assert "HTTP 404" in done.error and "/nowhere/chat/completions" in done.error and "Not Found" in done.error


def test_a_refused_key_names_the_variable_and_never_the_key(monkeypatch):
    monkeypatch.setenv("TEAM_LLM_CREDS", "sk-wrong-0123456789")
    with serving(FaultServer(key="sk-right-9876543210")) as server:
        done = ask(engine_for(server, api_key_env="TEAM_LLM_CREDS"))
    assert not done.ok and "HTTP 401" in done.error and "TEAM_LLM_CREDS" in done.error
    assert "sk-wrong-0123456789" not in done.error and "***" in done.error  # the server echoed it: masked


def test_a_server_that_stays_down_raises_engine_unavailable_after_the_retries():
    with serving(FaultServer()) as server:
        server.down = True
        with pytest.raises(EngineUnavailable, match=r"still fails after 2 retries \(HTTP 503"):
            ask(engine_for(server, max_retries=2))
    assert server.seen.statuses[503] == 3


def test_a_bad_base_url_names_the_key():
    with pytest.raises(ValueError, match="base_url must be the http"):
        build_engine({"name": "m", "engine": "http", "base_url": "127.0.0.1:8000"})


def test_retry_after_reads_seconds_and_http_dates():
    import httpx

    assert retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert retry_after(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0  # in the past
    assert retry_after(httpx.Headers({"Retry-After": "soon"})) is None and retry_after(httpx.Headers()) is None


def test_the_budget_caps_requests_in_flight_across_callers():
    budget = RequestBudget(max_concurrency=3)
    with serving(FaultServer(latency_s=0.05)) as server:
        engines = [engine_for(server, budget=budget) for _ in range(4)]  # four actors, one run-wide budget

        async def many():
            return await asyncio.gather(
                *(e.chat([{"role": "user", "content": f"q{i}"}]) for i in range(10) for e in engines)
            )

        done = asyncio.run(many())
    assert all(d.ok for d in done) and len(server.seen.times) == 40
    assert server.seen.peak == 3


def test_a_bucket_admits_at_most_its_rate_times_the_window_plus_its_burst():
    budget = RequestBudget(max_concurrency=100, requests_per_minute=1200)  # 20/s, burst 20

    async def spend(seconds: float) -> list[float]:
        times, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            lease = await budget.acquire()
            times.append(time.monotonic())
            await budget.release(lease)
        return times

    times = asyncio.run(spend(1.5))
    assert 20 * 1.5 <= len(times) <= 20 * 1.5 + 20 + 1


def test_a_token_budget_waits_for_the_tokens_a_request_will_use_and_books_what_it_used():
    bucket = Bucket(per_minute=600)  # 10 tokens/s, burst 10
    assert bucket.wait_s(10) == 0.0
    bucket.take(10)
    assert 0.9 < bucket.wait_s(10) <= 1.0
    bucket.give_back(-20)  # the request used 20 more than it was charged: a debt
    assert bucket.wait_s(5) > 2.0
    assert Bucket(per_minute=60).wait_s(1_000) == 0.0  # larger than the burst: taken from a full bucket


def test_a_lost_lease_is_taken_back():
    budget = RequestBudget(max_concurrency=1, lease_s=0.2)

    async def holder_dies_then_another_acquires() -> float:
        await budget.acquire()  # never released
        started = time.monotonic()
        await budget.acquire()
        return time.monotonic() - started

    assert 0.15 < asyncio.run(holder_dies_then_another_acquires()) < 2.5


def test_a_server_without_prompt_log_probabilities_cannot_score_and_cascade_falls_back_to_agreement():
    import random

    from generation.recipes import build_recipe
    from tests.conftest import make_config

    recipe = build_recipe(make_config(["recipe=cascade", "recipe.n=3"])["recipe"])
    with serving(FaultServer()) as server:
        engine = engine_for(server)
        scored = asyncio.run(engine.score([{"role": "user", "content": "Pick one."}], ["yes", "no"]))
        answered = ask(engine, logprobs=True)
        seed = {"instruction": "What is 7 + 5?", "output": "12"}
        [sample] = asyncio.run(recipe.run(seed, engine, random.Random(0)))
    assert not scored.ok and "cannot score choices" in scored.error and "HTTP 404" in scored.error
    assert answered.ok and answered.logprobs is None and server.seen.bodies[0]["logprobs"] is True
    assert sample.error is None and sample.fields["confidence_from"] == "agreement"
    assert [body["n"] for body in server.seen.bodies[1:]] == [1, 3, 3]  # asked once for log-probabilities, then n
