"""TarGEN: seedless generation from a task description and label set, with self-correction.

Gupta et al., 2023, "TarGEN: Targeted Data Generation with Large Language Models". Step 1 asks for contexts for the
task, step 2 writes one instance per label in each context, step 3 has the model re-label each instance
(constrained to the label set); a mismatch is corrected to the model's label (``on_mismatch: correct``) or the
instance is rejected (``drop``).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, render, string_list, user


class TarGEN:
    """Args:
    contexts_per_task: contexts asked for per task; each gets one instance per label.
    on_mismatch: ``correct`` (keep with the model's label, ``corrected`` true) or ``drop`` (rejected/).
    context_prompt: ``{task}``, ``{count}``.
    instance_prompt: ``{task}``, ``{context}``, ``{label}``.
    relabel_prompt: ``{task}``, ``{text}``, ``{labels}``.
    sampling: sampling for every call.
    """

    name: ClassVar[str] = "targen"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "task": pa.string(),
        "context": pa.string(),
        "text": pa.string(),
        "intended_label": pa.string(),
        "label": pa.string(),
        "corrected": pa.bool_(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("text",)
    balance_fields: ClassVar[tuple[str, ...]] = ("label", "corrected")
    required_fields: ClassVar[tuple[str, ...]] = ("task",)

    def __init__(
        self,
        context_prompt: str,
        instance_prompt: str,
        relabel_prompt: str,
        contexts_per_task: int = 2,
        on_mismatch: str = "correct",
        sampling: dict | None = None,
    ) -> None:
        if on_mismatch not in ("correct", "drop"):
            raise ValueError(f"unknown recipe.on_mismatch {on_mismatch!r}; valid choices: ['correct', 'drop']")
        self.context_prompt, self.instance_prompt, self.relabel_prompt = context_prompt, instance_prompt, relabel_prompt
        self.count, self.on_mismatch = contexts_per_task, on_mismatch
        self.sampling = check_sampling(sampling)

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        task, labels = seed["task"].strip(), [str(label) for label in seed.get("labels") or []]
        first = Sample({"task": task})
        if len(labels) < 2:
            return [first.fail("input", f"seed needs a `labels` list with at least 2 labels, got {labels}")]
        try:
            value = await first.ask_json(
                engine,
                user(render(self.context_prompt, task=task, count=self.count)),
                string_list("contexts", self.count),
                **self.sampling,
            )
        except StepFailed as failed:
            return [first.fail(failed.stage, failed.error)]
        contexts = [c.strip() for c in value.get("contexts", []) if isinstance(c, str) and c.strip()][: self.count]
        if not contexts:
            return [first.fail("parse", f"no contexts in {value!r}"[:300])]
        samples = first.fan_out([{"context": c, "intended_label": label} for c in contexts for label in labels])
        label_schema = {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": labels}},
            "required": ["label"],
        }

        async def make(sample: Sample) -> Sample:
            intended = sample.fields["intended_label"]
            text = (
                await sample.ask(
                    engine,
                    user(render(self.instance_prompt, task=task, context=sample.fields["context"], label=intended)),
                    **self.sampling,
                )
            ).text.strip()
            verdict = await sample.ask_json(
                engine,
                user(render(self.relabel_prompt, task=task, text=text, labels=", ".join(labels))),
                label_schema,
                **{**self.sampling, "temperature": 0.0},
            )
            relabel = verdict.get("label") if isinstance(verdict, dict) else None
            if relabel not in labels:
                raise StepFailed("parse", f"re-label is not one of {labels}: {verdict!r}"[:300])
            mismatch = relabel != intended
            sample.fields.update(text=text, label=relabel, corrected=mismatch)
            if mismatch and self.on_mismatch == "drop":
                return sample.reject(f"relabelled_{intended}_as_{relabel}")
            return sample

        return list(await asyncio.gather(*(attempt(s, make) for s in samples)))
