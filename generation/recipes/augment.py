"""Instruction data augmentation: new answers, rephrased questions, or new questions from a seed pair.

After "Balancing Cost and Effectiveness of Synthetic Data Generation Strategies for LLMs" (Chan et al., 2024), which
compares answer augmentation, question rephrasing and new-question generation. ``strategy`` selects one; ``n``
samples come from one engine call per step (the engine batches them).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, render, user

STRATEGIES = ("answer_augmentation", "question_rephrase", "new_question")


class Augment:
    """Args:
    strategy: one of answer_augmentation, question_rephrase, new_question.
    n: samples per seed.
    prompts: strategy → user message template (``{instruction}``, ``{output}``); new_question's result is
        answered with ``answer_prompt``.
    answer_prompt: answers a new question: ``{instruction}``.
    sampling: sampling for every call.
    """

    name: ClassVar[str] = "augment"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "strategy": pa.string(),
        "source_instruction": pa.string(),
        "instruction": pa.string(),
        "response": pa.string(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("instruction", "response")
    export_map: ClassVar[dict[str, str]] = {"prompt": "instruction", "response": "response"}
    balance_fields: ClassVar[tuple[str, ...]] = ("strategy",)
    required_fields: ClassVar[tuple[str, ...]] = ("instruction", "output")

    def __init__(
        self, strategy: str, prompts: dict[str, str], answer_prompt: str, n: int = 2, sampling: dict | None = None
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown recipe.strategy {strategy!r}; valid choices: {list(STRATEGIES)}")
        if strategy not in prompts:
            raise ValueError(f"recipe.prompts has no template for strategy {strategy!r}")
        if n < 1:
            raise ValueError(f"recipe.n must be >= 1, got {n}")
        self.strategy, self.prompt, self.answer_prompt, self.n = strategy, prompts[strategy], answer_prompt, n
        self.sampling = check_sampling(sampling)

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        instruction, output = format_instruction(seed), str(seed["output"]).strip()
        base = Sample({"strategy": self.strategy, "source_instruction": instruction})
        try:
            done = await base.ask(
                engine, user(render(self.prompt, instruction=instruction, output=output)), n=self.n, **self.sampling
            )
        except StepFailed as failed:
            return [base.fail(failed.stage, failed.error)]
        texts = [t.strip() for t in done.texts]
        samples = base.fan_out([{} for _ in texts])
        if self.strategy == "answer_augmentation":
            for sample, text in zip(samples, texts, strict=True):
                sample.fields.update(instruction=instruction, response=text)
            return samples
        if self.strategy == "question_rephrase":
            for sample, text in zip(samples, texts, strict=True):
                sample.fields.update(instruction=text, response=output)
            return samples

        async def answer(sample: Sample, question: str) -> Sample:
            reply = await sample.ask(engine, user(render(self.answer_prompt, instruction=question)), **self.sampling)
            sample.fields.update(instruction=question, response=reply.text.strip())
            return sample

        return list(
            await asyncio.gather(
                *(attempt(s, lambda s, q=q: answer(s, q)) for s, q in zip(samples, texts, strict=False))
            )
        )


def format_instruction(seed: dict[str, Any]) -> str:
    extra = str(seed.get("input") or "").strip()
    return f"{seed['instruction'].strip()}\n\n{extra}" if extra else seed["instruction"].strip()
