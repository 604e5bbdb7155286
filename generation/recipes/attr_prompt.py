"""AttrPrompt: attributed prompts for diverse, balanced training data.

Yu et al., 2023, "Large Language Model as Attributed Training Data Generator: A Tale of Diversity and Bias".
Attribute dimensions (topic × length × style × label ...) come from config; every combination of their values is
enumerated in a run-seeded order and a run-wide cursor hands each seed the next ``samples_per_seed`` of that cycle,
so over the run every combination is used the same number of times (±1).
Each attribute is stored as a column, so the balance can be counted on the output.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engine import EngineClient, check_sampling
from generation.recipes.base import Sample, attempt, placeholders, render, user
from generation.state import SharedState

CURSOR = "attr_prompt_cursor"


class AttrPrompt:
    """Args:
    attributes: attribute name → list of values; every combination is a possible prompt.
    prompt: user message; ``{task}`` and each ``{attribute}`` are filled in.
    samples_per_seed: combinations generated per seed (walked in order through the shuffled cycle).
    sampling: sampling for the generation call.
    run_seed: shuffles the cycle of combinations (set from run.seed by the pipeline).
    """

    name: ClassVar[str] = "attr_prompt"
    text_fields: ClassVar[tuple[str, ...]] = ("text",)
    required_fields: ClassVar[tuple[str, ...]] = ("task",)

    def __init__(
        self,
        attributes: dict[str, list],
        prompt: str,
        samples_per_seed: int = 4,
        sampling: dict | None = None,
        run_seed: int = 0,
    ) -> None:
        if not attributes or any(not values for values in attributes.values()):
            raise ValueError("recipe.attributes needs at least one attribute, each with a non-empty list of values")
        unknown = sorted(set(placeholders(prompt)) - {"task", *attributes})
        if unknown:
            raise ValueError(f"recipe.prompt names {unknown}; it may use {{task}} and {sorted(attributes)}")
        self.attributes = {k: [str(v) for v in values] for k, values in attributes.items()}
        self.prompt = prompt
        self.samples_per_seed = samples_per_seed
        self.sampling = check_sampling(sampling)
        self.cycle = [
            dict(zip(self.attributes, combo, strict=True)) for combo in itertools.product(*self.attributes.values())
        ]
        random.Random(run_seed).shuffle(self.cycle)
        self.columns = {**{k: pa.string() for k in self.attributes}, "text": pa.string()}
        self.balance_fields = tuple(self.attributes)
        self.state = SharedState()

    def bind_state(self, state: SharedState) -> None:
        """The cursor over the cycle of combinations is shared by every engine actor of the run."""
        self.state = state

    async def next_combinations(self) -> list[dict[str, str]]:
        start = await self.state.advance(CURSOR, self.samples_per_seed)
        return [self.cycle[(start + i) % len(self.cycle)] for i in range(self.samples_per_seed)]

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        async def one(combo: dict[str, str], sample: Sample) -> Sample:
            done = await sample.ask(engine, user(render(self.prompt, task=seed["task"], **combo)), **self.sampling)
            sample.fields["text"] = done.text.strip()
            return sample

        combos = await self.next_combinations()
        return list(await asyncio.gather(*(attempt(Sample(dict(c)), lambda s, c=c: one(c, s)) for c in combos)))
