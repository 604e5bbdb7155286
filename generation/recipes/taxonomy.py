"""TnT-LLM: the model first builds a label taxonomy from a sample of the corpus, then labels every row with it.

Wan et al., 2024, "TnT-LLM: Text Mining at Scale with Large Language Models", §3.1. Phase 1 runs once per run on a
sample of the run's own source (the first engine actor to get there computes it; the others wait): each sampled
text is summarised, then the summaries are read in mini-batches the way stochastic gradient descent reads data: the
first batch **generates** an initial taxonomy, every later batch **updates** it (labels added, merged, split or
renamed to fit the new batch), and a final **review** checks the result against the quality criteria (no overlaps,
names that classify new texts without ambiguity) and rewrites it. The taxonomy and its history are saved as
``artifacts/taxonomy.json``. Phase 2 labels each seed with a label constrained to the taxonomy.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, parse_json, render, user
from generation.state import ARTIFACT, SharedState

_LABEL = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 40},
        "description": {"type": "string", "maxLength": 80},
    },
    "required": ["name", "description"],
}


GENERATE_ATTEMPTS = 6


def taxonomy_schema(max_labels: int) -> dict[str, Any]:
    """Bounded sizes keep a small model from running out of max_tokens before the JSON closes."""
    labels = {"type": "array", "minItems": 2, "maxItems": max(2, max_labels), "items": _LABEL}
    return {"type": "object", "properties": {"labels": labels}, "required": ["labels"]}


class Taxonomy:
    """Args:
    summary_prompt: ``{text}``: one text → its short summary.
    generate_prompt: ``{summaries}``: the first mini-batch → an initial taxonomy.
    update_prompt: ``{taxonomy}``, ``{summaries}``: the taxonomy so far and the next mini-batch → a revised one.
    review_prompt: ``{taxonomy}``: the final review against the quality criteria.
    label_prompt: ``{text}``, ``{taxonomy}``: phase 2, one label per seed.
    sample: phase-1 texts (list of strings); None reads the ``text`` field of the run's corpus sample.
    sample_size: texts summarised in phase 1 (the corpus sample is in random order: the first ones are a sample).
    batch_size: summaries per generate or update step.
    max_labels: most labels a taxonomy may have.
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
        generate_prompt: str,
        update_prompt: str,
        review_prompt: str,
        label_prompt: str,
        sample: list[str] | None = None,
        sample_size: int = 12,
        batch_size: int = 6,
        max_labels: int = 6,
        sampling: dict | None = None,
    ) -> None:
        if sample_size < 2:
            raise ValueError(f"recipe.sample_size must be at least 2 texts for the taxonomy phase, got {sample_size}")
        self.prompts = dict(
            summary=summary_prompt, generate=generate_prompt, update=update_prompt, review=review_prompt
        )
        self.label_prompt = label_prompt
        self.sample_size, self.batch_size = sample_size, max(1, batch_size)
        self.schema = taxonomy_schema(max_labels)
        self.sampling = check_sampling(sampling)
        self.state = SharedState()
        self.sample: list[tuple[str, str]] = []  # (id, text) read in phase 1
        if sample is not None:
            self._take([(f"recipe.sample:{i}", text) for i, text in enumerate(sample)], "recipe.sample")

    def _take(self, texts: list[tuple[str, Any]], where: str) -> None:
        usable = [(key, text.strip()) for key, text in texts if isinstance(text, str) and text.strip()]
        if len(usable) < 2:
            raise ValueError(f"the taxonomy phase needs at least 2 texts; {where} has {len(usable)}")
        self.sample = usable[: self.sample_size]

    def bind_state(self, state: SharedState) -> None:
        self.state = state

    def bind_corpus(self, rows: list[dict[str, Any]]) -> None:
        """Phase 1 reads the run's own source (``recipe.sample``, when given, is used instead)."""
        if not self.sample:
            where = f"the run's corpus sample ({len(rows)} seeds; seeds need a non-empty 'text' field)"
            self._take([(str(row.get("id")), row.get("text")) for row in rows], where)

    async def _ask_taxonomy(
        self, engine: EngineClient, sample: Sample, prompt: str, **sampling: Any
    ) -> list[dict[str, str]]:
        """A taxonomy from one call, names unique and trimmed; empty when the output holds none."""
        done = sample.spend(await engine.chat(user(prompt), json_schema=self.schema, **{**self.sampling, **sampling}))
        value = parse_json(done.text) if done.ok else None
        labels = value.get("labels") if isinstance(value, dict) else None
        unique: dict[str, str] = {}
        for label in labels if isinstance(labels, list) else []:
            if isinstance(label, dict) and str(label.get("name", "")).strip():
                unique.setdefault(str(label["name"]).strip(), str(label.get("description", "")).strip())
        return [{"name": k, "description": v} for k, v in unique.items()] if len(unique) >= 2 else []

    async def build_taxonomy(self, engine: EngineClient, sample: Sample) -> dict[str, Any]:
        """Phase 1: summaries → generate on the first mini-batch → update per later mini-batch → review (tokens on
        ``sample``). A failed update or review keeps the taxonomy it was given, and the history says so."""
        if not self.sample:
            raise StepFailed("taxonomy", "no texts for phase 1: the recipe was given no corpus sample")
        done = await asyncio.gather(
            *(engine.chat(user(render(self.prompts["summary"], text=t)), **self.sampling) for _, t in self.sample)
        )
        summaries = [sample.spend(s).text.strip() for s in done if s.ok and s.text.strip()]
        if not summaries:
            raise StepFailed("taxonomy", "no usable summary in phase 1")
        batches = [summaries[i : i + self.batch_size] for i in range(0, len(summaries), self.batch_size)]
        generate = render(self.prompts["generate"], summaries=_list(batches[0]))
        # Everything after rests on it: a small model gets a few tries, hotter each time (at low temperature it tends
        # to repeat one name for every label: 1 run in 4 failed with 3 tries at the recipe's temperature).
        for tries in range(GENERATE_ATTEMPTS):
            temperature = max(float(self.sampling.get("temperature", 0.3)), min(1.0, 0.3 + 0.35 * tries))
            taxonomy = await self._ask_taxonomy(engine, sample, generate, temperature=temperature)
            if taxonomy:
                break
        else:
            raise StepFailed(
                "taxonomy",
                f"no usable taxonomy (2 distinct labels) from the first mini-batch, {GENERATE_ATTEMPTS} tries",
            )
        history = [{"step": "generate", "batch": 0, "labels": _names(taxonomy)}]
        for index, batch in enumerate(batches[1:], 1):
            prompt = render(self.prompts["update"], taxonomy=_describe(taxonomy), summaries=_list(batch))
            updated = await self._ask_taxonomy(engine, sample, prompt)
            history.append(
                {"step": "update", "batch": index, "labels": _names(updated or taxonomy), "kept": not updated}
            )
            taxonomy = updated or taxonomy
        reviewed = await self._ask_taxonomy(
            engine, sample, render(self.prompts["review"], taxonomy=_describe(taxonomy))
        )
        history.append({"step": "review", "labels": _names(reviewed or taxonomy), "kept": not reviewed})
        return {
            "labels": reviewed or taxonomy,
            "sample_ids": [key for key, _ in self.sample],
            "summaries": summaries,
            "history": history,
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
            names = _names(taxonomy["labels"])
            schema = {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": names}},
                "required": ["label"],
            }
            verdict = await sample.ask_json(
                engine,
                user(render(self.label_prompt, text=text, taxonomy=_describe(taxonomy["labels"]))),
                schema,
                **{**self.sampling, "temperature": 0.0},
            )
            chosen = verdict.get("label") if isinstance(verdict, dict) else None
            if chosen not in names:
                raise StepFailed("parse", f"label is not in the taxonomy {names}: {verdict!r}"[:300])
            sample.fields.update(text=text, label=chosen)
            return sample

        return [await attempt(Sample(), label)]


def _names(labels: list[dict[str, str]]) -> list[str]:
    return [x["name"] for x in labels]


def _describe(labels: list[dict[str, str]]) -> str:
    return "\n".join(f"- {x['name']}: {x.get('description', '')}" for x in labels)


def _list(summaries: list[str]) -> str:
    return "\n".join(f"- {s}" for s in summaries)
