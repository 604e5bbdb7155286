"""TrueTeacher: summaries from several summarizers, each labelled for factual consistency by a teacher model.

After Gekhman et al. (2023), "TrueTeacher: Learning Factual Consistency Evaluation with Large Language Models":
model-written summaries of real documents (from summarizers of differing quality, so both consistent and
inconsistent ones occur) are labelled by a strong LLM, giving training data for a factual-consistency classifier.
Each summarizer is a role (``engines.<role>``; an unset role is the generator) with its own sampling, so one model at
two temperatures already gives two summarizers. ``engines.teacher`` labels every (document, summary) pair.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, render, role, user

LABEL_SCHEMA = {"type": "object", "properties": {"consistent": {"type": "boolean"}}, "required": ["consistent"]}
TEACHER = "teacher"


class TrueTeacher:
    """Args:
    summarizers: list of ``{name, role (default generator), sampling}``: who writes a summary of each document.
    summary_prompt: ``{document}``.
    label_prompt: ``{document}`` and ``{summary}``; the teacher answers {"consistent": true|false}.
    summary_sampling: sampling every summarizer starts from; label_sampling: the teacher's.
    """

    name: ClassVar[str] = "true_teacher"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "document": pa.string(),
        "summary": pa.string(),
        "label": pa.string(),
        "summarizer": pa.string(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("summary",)
    required_fields: ClassVar[tuple[str, ...]] = ("text",)
    balance_fields: ClassVar[tuple[str, ...]] = ("label", "summarizer")

    def __init__(
        self,
        summarizers: list[Mapping[str, Any]],
        summary_prompt: str,
        label_prompt: str,
        summary_sampling: dict | None = None,
        label_sampling: dict | None = None,
    ) -> None:
        if not summarizers:
            raise ValueError("recipe.summarizers needs at least one summarizer ({name, role, sampling})")
        names = [str(s.get("name") or "") for s in summarizers]
        if not all(names) or len(set(names)) != len(names):
            raise ValueError(f"every recipe.summarizers entry needs a distinct name, got {names}")
        base = check_sampling(summary_sampling)
        self.summarizers = [
            (name, str(s.get("role") or "generator"), {**base, **check_sampling(s.get("sampling"))})
            for name, s in zip(names, summarizers, strict=True)
        ]
        self.summary_prompt, self.label_prompt = summary_prompt, label_prompt
        self.label_sampling = check_sampling(label_sampling)

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        document = seed["text"].strip()
        teacher = role(engine, TEACHER)

        async def summarize_and_label(name: str, writer: str, sampling: dict) -> Sample:
            sample = Sample({"document": document, "summarizer": name})

            async def steps(sample: Sample) -> Sample:
                done = await sample.ask(
                    role(engine, writer), user(render(self.summary_prompt, document=document)), **sampling
                )
                summary = done.text.strip()
                if not summary:
                    raise StepFailed("parse", f"summarizer {name} wrote an empty summary")
                sample.fields["summary"] = summary
                verdict = await sample.ask_json(
                    teacher,
                    user(render(self.label_prompt, document=document, summary=summary)),
                    LABEL_SCHEMA,
                    **self.label_sampling,
                )
                if not isinstance(verdict.get("consistent"), bool):
                    raise StepFailed("parse", f"the teacher gave no verdict: {verdict!r}"[:300])
                sample.fields["label"] = "consistent" if verdict["consistent"] else "inconsistent"
                return sample

            return await attempt(sample, steps)

        return list(await asyncio.gather(*(summarize_and_label(*s) for s in self.summarizers)))
