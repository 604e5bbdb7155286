"""synthray's HTTP engine vs a plain async client loop against the same local vLLM OpenAI server, same prompts,
sampling and concurrency; the in-process vLLM engine for reference (after the server stops: both do not fit 2 cores).

The plain loop is the official ``openai`` async client under an ``asyncio.Semaphore``. synthray's engine runs as in
a run: every request takes a permit from the run-wide ``RequestBudget`` actor (two Ray calls per request). Rounds
alternate so server warm-up and machine noise fall on both; the best round of each counts.

    .venv/bin/python benchmarks/http_engine.py [--prompts 128] [--max-tokens 64] [--concurrency 32] [--rounds 2]

Last line: ``ratio <synthray tokens/s / plain client tokens/s>`` (target ≥ 0.95).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPT = "Write one sentence about the number {i}."


def prompts(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": PROMPT.format(i=i)}] for i in range(count)]


async def plain_loop(base_url: str, name: str, messages: list, max_tokens: int, concurrency: int) -> tuple[int, float]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(m: list) -> int:
        async with gate:
            reply = await client.chat.completions.create(model=name, messages=m, max_tokens=max_tokens, temperature=0.0)
            return reply.usage.completion_tokens

    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(m) for m in messages)))
    seconds = time.perf_counter() - started
    await client.close()
    return tokens, seconds


async def synthray_engine(engine, messages: list, max_tokens: int) -> tuple[int, float]:
    started = time.perf_counter()
    done = await asyncio.gather(*(engine.chat(m, max_tokens=max_tokens, temperature=0.0) for m in messages))
    seconds = time.perf_counter() - started
    failed = [d.error for d in done if not d.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} calls failed, e.g. {failed[0]}")
    return sum(d.completion_tokens for d in done), seconds


def in_process(messages: list, max_tokens: int) -> tuple[int, float]:
    from benchmarks.engine_overhead import cpu_model
    from generation.engines import build_engine

    async def go() -> tuple[int, float]:
        engine = build_engine({**cpu_model(), "sampling": {"temperature": 0.0, "max_tokens": max_tokens}})
        try:
            await engine.chat(messages[0], max_tokens=4)  # warm-up, as the server got
            started = time.perf_counter()
            done = await asyncio.gather(*(engine.chat(m) for m in messages))
            return sum(d.completion_tokens for d in done), time.perf_counter() - started
        finally:
            engine.shutdown()

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import ray

    from generation.actor import RemoteBudget
    from generation.engines import build_engine
    from generation.engines.budget import RequestBudget
    from tests.vllm_server import SERVED_NAME, vllm_server

    messages = prompts(args.prompts)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    budget = ray.remote(RequestBudget).options(num_cpus=0, max_concurrency=100_000).remote(args.concurrency)
    best: dict[str, float] = {}
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, vllm_server(Path(tmp) / "server.log", max_num_seqs=64) as url:
        model = {"name": SERVED_NAME, "engine": "http", "base_url": url, "max_concurrency": args.concurrency}
        engine = build_engine(model, budget=RemoteBudget(budget))

        async def rounds() -> None:
            await plain_loop(url, SERVED_NAME, messages[:8], 8, args.concurrency)  # warm-up
            for round_ in range(args.rounds):
                for label, run in (
                    ("plain openai client", lambda: plain_loop(url, SERVED_NAME, messages, args.max_tokens,
                                                               args.concurrency)),
                    ("synthray HTTP engine", lambda: synthray_engine(engine, messages, args.max_tokens)),
                ):  # fmt: skip
                    tokens, seconds = await run()
                    rate = tokens / seconds
                    best[label] = max(best.get(label, 0.0), rate)
                    rates.setdefault(label, []).append(rate)
                    print(f"round {round_ + 1} {label:22s} {tokens:6d} tokens in {seconds:6.1f} s = {rate:7.1f} tok/s")

        asyncio.run(rounds())
    ray.shutdown()
    tokens, seconds = in_process(messages, args.max_tokens)
    print(
        f"in-process vLLM engine    {tokens:6d} tokens in {seconds:6.1f} s = {tokens / seconds:7.1f} tok/s (reference)"
    )
    means = {label: sum(r) / len(r) for label, r in rates.items()}
    print(f"mean over rounds: ratio {means['synthray HTTP engine'] / means['plain openai client']:.3f}")
    print(f"ratio {best['synthray HTTP engine'] / best['plain openai client']:.3f}")


if __name__ == "__main__":  # vLLM spawns processes: the entrypoint must be import-safe
    main()
