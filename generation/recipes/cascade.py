"""Language model cascade: the generator answers first and defers what it is unsure about to ``engines.large``.

After FrugalGPT (Chen et al., 2023) and "Language Model Cascades: Token-Level Uncertainty and Beyond" (Gupta et al.,
2024): a small model's confidence in its own answer decides whether a larger, costlier model is asked. Confidence is
the geometric mean probability of the answer's tokens when the engine returns log-probabilities, else the agreement of
``n`` sampled answers, the deferral signal of LLM cascades with answer consistency (Yue et al., 2024). Rows record who
answered, both confidences and, when the seed has a reference ``output``, whether the answer matches it (by value for
numbers, choices and JSON: generation/answers.py); run.json gets the deferral rate, the accuracy and the cost against
sending every item to the large model.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

import pyarrow as pa

from generation.answers import candidate_answer, normalised, reference_answer, same_value
from generation.engines import EngineClient, check_sampling
from generation.engines.base import token_confidence
from generation.recipes.base import Sample, StepFailed, attempt, render, role, user

CONFIDENCES = ("auto", "logprob", "agreement")
SMALL, LARGE = "small", "large"


def answer_key(text: str) -> str:
    """What two answers must share to agree: their checkable value, else their normalised text."""
    checkable = reference_answer(text)
    return f"{checkable.kind}:{checkable.shown()}" if checkable else normalised(text)


def matches(reference: str, answer: str) -> bool:
    """A checkable reference is compared by value with the answer's last value of its kind; free text must occur in
    the answer (after normalising case, quotes and spaces)."""
    expected = reference_answer(reference)
    if expected is not None:
        return same_value(expected, candidate_answer(answer, expected.kind))
    return normalised(reference) in normalised(answer)


class Cascade:
    """Args:
    prompt: ``{instruction}`` and ``{input}`` (empty when the seed has none).
    threshold: the small model's answers with a lower confidence go to ``engines.large``.
    confidence: ``auto`` (log-probabilities when the engine returns them, else agreement), ``logprob`` or
        ``agreement``.
    n: sampled answers whose agreement is the confidence.
    sampling: the answering call (greedy by default); agreement_sampling: the n samples (temperature > 0).
    """

    name: ClassVar[str] = "cascade"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "instruction": pa.string(),
        "answer": pa.string(),
        "answered_by": pa.string(),
        "small_answer": pa.string(),
        "small_confidence": pa.float64(),
        "large_confidence": pa.float64(),
        "confidence_from": pa.string(),
        "reference": pa.string(),
        "correct": pa.bool_(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("answer",)
    export_map: ClassVar[dict[str, str]] = {"prompt": "instruction", "response": "answer"}
    required_fields: ClassVar[tuple[str, ...]] = ("instruction",)
    balance_fields: ClassVar[tuple[str, ...]] = ("answered_by",)
    tally_fields: ClassVar[tuple[str, ...]] = ("answered_by", "correct")

    def __init__(
        self,
        prompt: str,
        threshold: float = 0.7,
        confidence: str = "auto",
        n: int = 5,
        sampling: dict | None = None,
        agreement_sampling: dict | None = None,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"recipe.threshold must be between 0 and 1 (a confidence), got {threshold!r}")
        if confidence not in CONFIDENCES:
            raise ValueError(f"unknown recipe.confidence {confidence!r}; valid choices: {list(CONFIDENCES)}")
        if n < 2:
            raise ValueError(f"recipe.n must be at least 2 (answers that can agree), got {n}")
        self.prompt, self.threshold, self.confidence, self.n = prompt, threshold, confidence, n
        self.sampling = check_sampling(sampling)
        self.agreement_sampling = check_sampling(agreement_sampling)
        self._without_logprobs: set[str] = set()  # models seen answering without log-probabilities (auto mode)

    async def _answer(self, sample: Sample, engine: EngineClient, messages: list[dict]) -> tuple[str, float, str]:
        """(answer, confidence, where the confidence came from) of one model."""
        if self.confidence != "agreement" and engine.model_name not in self._without_logprobs:
            try:
                done = await sample.ask(engine, messages, **{**self.sampling, "logprobs": True})
            except StepFailed:
                if self.confidence == "logprob":
                    raise
                done = None  # a server refusing log-probabilities: agreement instead
            confidence = token_confidence(done.logprobs[0]) if done is not None and done.logprobs else None
            if confidence is not None:
                return done.text.strip(), confidence, "logprob"
            if self.confidence == "logprob":
                raise StepFailed(
                    "engine",
                    f"{engine.model_name} returned no log-probabilities; set recipe.confidence=auto or agreement",
                )
            self._without_logprobs.add(engine.model_name)
        done = await sample.ask(engine, messages, n=self.n, **self.agreement_sampling)
        keys = [answer_key(text) for text in done.texts]
        (top, count), *_ = Counter(keys).most_common(1)
        return done.texts[keys.index(top)].strip(), count / len(keys), "agreement"

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        instruction = seed["instruction"].strip()
        reference = str(seed.get("output") or "").strip() or None
        messages = user(render(self.prompt, instruction=instruction, input=str(seed.get("input") or "").strip()))

        async def answer(sample: Sample) -> Sample:
            text, confidence, source = await self._answer(sample, engine, messages)
            fields = {"small_answer": text, "small_confidence": round(confidence, 4), "confidence_from": source}
            if confidence >= self.threshold:
                fields.update(answer=text, answered_by=SMALL)
            else:
                text, large_confidence, _ = await self._answer(sample, role(engine, LARGE), messages)
                fields.update(answer=text, answered_by=LARGE, large_confidence=round(large_confidence, 4))
            sample.fields.update(instruction=instruction, reference=reference, **fields)
            if reference is not None:
                sample.fields["correct"] = matches(reference, text)
            return sample

        return [await attempt(Sample(), answer)]

    @staticmethod
    def run_figures(tallies: Mapping[str, Mapping[str, int]], roles: Mapping[str, Mapping[str, Any]]) -> dict:
        """Deferral rate, accuracy over seeds with a reference, and tokens (and cost, when priced) of the cascade
        against every item sent to the large model (estimated from the large model's spending per deferred item)."""
        by = tallies.get("answered_by") or {}
        items, deferred = sum(by.values()), by.get(LARGE, 0)
        if not items:
            return {}
        figures: dict[str, Any] = {"items": items, "deferred": deferred, "deferral_rate": round(deferred / items, 4)}
        correct = tallies.get("correct") or {}
        judged = correct.get("True", 0) + correct.get("False", 0)
        if judged:
            figures["accuracy"] = round(correct.get("True", 0) / judged, 4)
        both = [roles.get("generator") or {}, roles.get(LARGE) or {}]
        spent = {"tokens": [float(r.get("prompt_tokens", 0) + r.get("completion_tokens", 0)) for r in both]}
        if all("cost_usd" in r for r in both if r):  # a role with no calls costs nothing; an unpriced one is unknown
            spent["cost_usd"] = [float(r.get("cost_usd", 0.0)) for r in both]
        for unit, (small, large) in spent.items():
            figures[f"cascade_{unit}"] = round(small + large, 6)
            if deferred:
                figures[f"all_large_{unit}"] = round(large / deferred * items, 6)
        return {"cascade": figures}
