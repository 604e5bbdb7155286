"""Graded relevance: for each query, synthetic documents at every relevance level, for list-wise IR training.

After work on synthetic multi-level relevance data for ranking (e.g. "Synthetic Test Collections for Retrieval
Evaluation", Rahmani et al., 2024): one document per level 0..3, each prompted with that level's description.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, attempt, render, user


class GradedRelevance:
    """Args:
    levels: relevance level → description of a document at that level (e.g. 3: "fully answers the query").
    prompt: ``{query}``, ``{level}``, ``{description}``.
    sampling: sampling for every call.
    """

    name: ClassVar[str] = "graded_relevance"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "query": pa.string(),
        "relevance": pa.int32(),
        "document": pa.string(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("document",)
    balance_fields: ClassVar[tuple[str, ...]] = ("relevance",)
    required_fields: ClassVar[tuple[str, ...]] = ("query",)

    def __init__(self, levels: dict, prompt: str, sampling: dict | None = None) -> None:
        if not levels:
            raise ValueError("recipe.levels needs at least one relevance level")
        self.levels = {int(k): str(v) for k, v in levels.items()}
        self.prompt = prompt
        self.sampling = check_sampling(sampling)

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        query = seed["query"].strip()

        async def write(sample: Sample, level: int) -> Sample:
            prompt = render(self.prompt, query=query, level=level, description=self.levels[level])
            sample.fields["document"] = (await sample.ask(engine, user(prompt), **self.sampling)).text.strip()
            return sample

        return list(
            await asyncio.gather(
                *(
                    attempt(Sample({"query": query, "relevance": level}), lambda s, lv=level: write(s, lv))
                    for level in sorted(self.levels)
                )
            )
        )
