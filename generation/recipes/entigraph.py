"""EntiGraph: synthetic continued pretraining by relating entities of a document.

Yang et al., 2024, "Synthetic Continued Pretraining". Per document the model first extracts its salient entities
(JSON-constrained), then for ``pairs_per_document`` sampled pairs (and ``triples_per_document`` triples) writes a
text analysing how those entities relate, grounded in the document. One sample per pair or triple.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, render, user

ENTITY_SCHEMA = {
    "type": "object",
    "properties": {"entities": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 12}},
    "required": ["entities"],
}


class EntiGraph:
    """Args:
    entity_prompt: asks for the document's entities; ``{document}``.
    relation_prompt: asks how the entities relate; ``{document}`` and ``{entities}``.
    pairs_per_document: entity pairs sampled per document.
    triples_per_document: entity triples sampled per document.
    entity_sampling: sampling for the extraction call.
    relation_sampling: sampling for each relation text.
    """

    name: ClassVar[str] = "entigraph"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "entities": pa.list_(pa.string()),
        "entity_group": pa.list_(pa.string()),
        "text": pa.string(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("text",)
    required_fields: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(
        self,
        entity_prompt: str,
        relation_prompt: str,
        pairs_per_document: int = 3,
        triples_per_document: int = 1,
        entity_sampling: dict | None = None,
        relation_sampling: dict | None = None,
    ) -> None:
        if pairs_per_document + triples_per_document < 1:
            raise ValueError("recipe.pairs_per_document + recipe.triples_per_document must be >= 1")
        self.entity_prompt, self.relation_prompt = entity_prompt, relation_prompt
        self.pairs, self.triples = pairs_per_document, triples_per_document
        self.entity_sampling = check_sampling(entity_sampling)
        self.relation_sampling = check_sampling(relation_sampling)

    @staticmethod
    def clean_entities(value: Any) -> list[str]:
        items = value.get("entities") if isinstance(value, dict) else value
        if not isinstance(items, list):
            return []
        seen: dict[str, str] = {}
        for item in items:
            if isinstance(item, str) and item.strip():
                seen.setdefault(item.strip().lower(), item.strip())
        return list(seen.values())

    def groups(self, entities: list[str], rng: random.Random) -> list[tuple[str, ...]]:
        chosen = []
        for size, count in ((2, self.pairs), (3, self.triples)):
            combos = list(itertools.combinations(entities, size))
            chosen += rng.sample(combos, min(count, len(combos)))
        return chosen

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        extraction = Sample()
        document = seed["text"]
        try:
            found = await extraction.ask_json(
                engine, user(render(self.entity_prompt, document=document)), ENTITY_SCHEMA, **self.entity_sampling
            )
        except StepFailed as failed:
            return [extraction.fail(failed.stage, failed.error)]
        entities = self.clean_entities(found)
        if len(entities) < 2:
            return [extraction.fail("parse", f"fewer than 2 distinct entities extracted: {entities}")]
        groups = self.groups(entities, rng)
        extraction.fields["entities"] = entities
        samples = extraction.fan_out([{"entity_group": list(g)} for g in groups])

        async def relate(sample: Sample) -> Sample:
            prompt = render(self.relation_prompt, document=document, entities=", ".join(sample.fields["entity_group"]))
            sample.fields["text"] = (await sample.ask(engine, user(prompt), **self.relation_sampling)).text.strip()
            return sample

        return list(await asyncio.gather(*(attempt(s, relate) for s in samples)))
