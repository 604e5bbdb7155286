"""TnT-LLM: the model first builds a label taxonomy from a sample of the corpus, then labels every row with it.

Wan et al., 2024, "TnT-LLM: Text Mining at Scale with Large Language Models". Phase 1 runs once per run (the first
engine actor to get there computes it; the others wait): summaries of ``sample_size`` texts → taxonomy proposals on
batches of summaries → one merged taxonomy, saved as ``artifacts/taxonomy.json``. Phase 2 labels each seed with a
label constrained to the merged taxonomy.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engine import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, parse_json, render, user
from generation.seeds import builtin_seeds
from generation.state import ARTIFACT, SharedState

_LABEL = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 40},
        "description": {"type": "string", "maxLength": 100},
    },
    "required": ["name", "description"],
}
# Bounded sizes keep a small model from running out of max_tokens before the JSON closes.
TAXONOMY_SCHEMA = {
    "type": "object",
    "properties": {"labels": {"type": "array", "minItems": 2, "maxItems": 6, "items": _LABEL}},
    "required": ["labels"],
}


class Taxonomy:
    """Args:
    sample: texts for phase 1 (list of strings); None reads ``sample_set`` from the built-in sets.
    sample_set: built-in seed set used when ``sample`` is None.
    sample_size: texts summarised in phase 1.
    proposal_batch: summaries per taxonomy proposal.
    summary_prompt: ``{text}``; propose_prompt: ``{summaries}``; merge_prompt: ``{taxonomies}``;
    label_prompt: ``{text}``, ``{taxonomy}``.
    sampling: sampling for phase 1 calls; labeling runs at temperature 0.
    """

    name: ClassVar[str] = "taxonomy"
    columns: ClassVar[dict[str, pa.DataType]] = {"text": pa.string(), "label": pa.string()}
    text_fields: ClassVar[tuple[str, ...]] = ("text",)
    balance_fields: ClassVar[tuple[str, ...]] = ("label",)
    required_fields: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(
        self,
        summary_prompt: str,
        propose_prompt: str,
        merge_prompt: str,
        label_prompt: str,
        sample: list[str] | None = None,
        sample_set: str = "texts",
        sample_size: int = 12,
        proposal_batch: int = 6,
        sampling: dict | None = None,
    ) -> None:
        texts = sample if sample is not None else [row["text"] for row in builtin_seeds(sample_set)]
        self.sample = [t for t in texts if isinstance(t, str) and t.strip()][:sample_size]
        if len(self.sample) < 2:
            raise ValueError("recipe.sample must hold at least 2 texts for the taxonomy phase")
        self.prompts = dict(summary=summary_prompt, propose=propose_prompt, merge=merge_prompt, label=label_prompt)
        self.proposal_batch = max(1, proposal_batch)
        self.sampling = check_sampling(sampling)
        self.state = SharedState()

    def bind_state(self, state: SharedState) -> None:
        self.state = state

    async def _ask_taxonomy(self, engine: EngineClient, sample: Sample, prompt: str) -> list[dict[str, str]]:
        done = sample.spend(await engine.chat(user(prompt), json_schema=TAXONOMY_SCHEMA, **self.sampling))
        value = parse_json(done.text) if done.ok else None
        labels = value.get("labels") if isinstance(value, dict) else None
        return [x for x in labels or [] if isinstance(x, dict) and str(x.get("name", "")).strip()]

    async def build_taxonomy(self, engine: EngineClient, sample: Sample) -> dict[str, Any]:
        """Phase 1: summaries → proposals on batches of summaries → one merged taxonomy (tokens on ``sample``)."""
        summaries = await asyncio.gather(
            *(engine.chat(user(render(self.prompts["summary"], text=t)), **self.sampling) for t in self.sample)
        )
        lines = [sample.spend(s).text.strip() for s in summaries if s.ok and s.text.strip()]
        batches = [lines[i : i + self.proposal_batch] for i in range(0, len(lines), self.proposal_batch)]
        proposals = await asyncio.gather(
            *(
                self._ask_taxonomy(
                    engine, sample, render(self.prompts["propose"], summaries="\n".join(f"- {x}" for x in b))
                )
                for b in batches
            )
        )
        proposals = [p for p in proposals if p]
        if not proposals:
            raise StepFailed("taxonomy", "no usable taxonomy proposal in phase 1")
        merged = (
            proposals[0]
            if len(proposals) == 1
            else await self._ask_taxonomy(
                engine, sample, render(self.prompts["merge"], taxonomies="\n\n".join(_describe(p) for p in proposals))
            )
        )
        merged = merged or proposals[0]
        unique = {str(x["name"]).strip(): str(x.get("description", "")).strip() for x in merged}
        return {
            "labels": [{"name": k, "description": v} for k, v in unique.items()],
            "summaries": lines,
            "proposals": proposals,
        }

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        text = seed["text"].strip()

        async def label(sample: Sample) -> Sample:
            try:
                taxonomy = await self.state.compute_once(
                    f"{ARTIFACT}taxonomy", lambda: self.build_taxonomy(engine, sample)
                )
            except RuntimeError as exc:  # another worker's phase 1 failed
                raise StepFailed("taxonomy", str(exc)) from exc
            names = [x["name"] for x in taxonomy["labels"]]
            schema = {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": names}},
                "required": ["label"],
            }
            verdict = await sample.ask_json(
                engine,
                user(render(self.prompts["label"], text=text, taxonomy=_describe(taxonomy["labels"]))),
                schema,
                **{**self.sampling, "temperature": 0.0},
            )
            chosen = verdict.get("label") if isinstance(verdict, dict) else None
            if chosen not in names:
                raise StepFailed("parse", f"label is not in the taxonomy {names}: {verdict!r}"[:300])
            sample.fields.update(text=text, label=chosen)
            return sample

        return [await attempt(Sample(), label)]


def _describe(labels: list[dict[str, str]]) -> str:
    return "\n".join(f"- {x['name']}: {x.get('description', '')}" for x in labels)
