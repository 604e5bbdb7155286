"""Back-translation with rejection sampling: from a seed's output, write the instruction that asks for it; solve
that instruction forward; keep the pair only when a verifier says the forward answer matches the original output.

After OptMATH (Lu et al., 2025: back-translate solutions into problems, re-solve, reject mismatches) and
instruction back-translation (Li et al., 2023, "Self-Alignment with Instruction Backtranslation"). When the seed's
output has a checkable answer (a number, a choice letter, a JSON value: generation/answers.py) the forward answer's
last value of that kind is compared with it by value, as OptMATH checks solutions, with no model asked; free text
falls back to an LLM verdict (the ``judge`` role, else the generator). ``verified_by`` says which decided. Rejected
pairs go to rejected/ with the reason.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.answers import candidate_answer, reference_answer, same_value
from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, render, role, user

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"match": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["match"],
}


class BackTranslate:
    """Args:
    backward_prompt: ``{output}``: asks for the instruction whose answer is this output.
    forward_prompt: ``{instruction}``: solves the generated instruction.
    verify_prompt: ``{instruction}``, ``{output}``, ``{forward}``; answers {"match": bool, "reason": str} (free-text
        outputs only).
    attempts: backward translations tried per seed (each verified independently).
    sampling: sampling for the backward and forward calls (the verifier runs at temperature 0).
    """

    name: ClassVar[str] = "back_translate"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "instruction": pa.string(),
        "response": pa.string(),
        "forward_response": pa.string(),
        "verified": pa.bool_(),
        "verified_by": pa.string(),
        "verifier_reason": pa.string(),
        "expected_answer": pa.string(),
        "forward_answer": pa.string(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("instruction", "response")
    export_map: ClassVar[dict[str, str]] = {"prompt": "instruction", "response": "response"}
    required_fields: ClassVar[tuple[str, ...]] = ("output",)
    balance_fields: ClassVar[tuple[str, ...]] = ("verified_by",)

    def __init__(
        self,
        backward_prompt: str,
        forward_prompt: str,
        verify_prompt: str,
        attempts: int = 1,
        sampling: dict | None = None,
    ) -> None:
        self.backward_prompt, self.forward_prompt, self.verify_prompt = backward_prompt, forward_prompt, verify_prompt
        self.attempts = attempts
        self.sampling = check_sampling(sampling)

    async def _llm_verdict(self, sample: Sample, judge: EngineClient, values: dict[str, str]) -> tuple[bool, str]:
        verdict = await sample.ask_json(
            judge,
            user(render(self.verify_prompt, **values)),
            VERDICT_SCHEMA,
            **{**self.sampling, "temperature": 0.0},
        )
        if not isinstance(verdict, dict):
            return False, ""
        return verdict.get("match") is True, str(verdict.get("reason", ""))

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        output = seed["output"].strip()
        expected = reference_answer(output)
        judge = role(engine, "judge")

        async def translate(sample: Sample) -> Sample:
            instruction = (
                await sample.ask(engine, user(render(self.backward_prompt, output=output)), **self.sampling)
            ).text.strip()
            if not instruction:
                raise StepFailed("parse", "empty back-translated instruction")
            forward = (
                await sample.ask(engine, user(render(self.forward_prompt, instruction=instruction)), **self.sampling)
            ).text.strip()
            sample.fields.update(instruction=instruction, response=output, forward_response=forward)
            if expected is not None:
                found = candidate_answer(forward, expected.kind)
                match = same_value(expected, found)
                reason = f"expected {expected.kind} {expected.shown()}, forward answer gives " + (
                    found.shown() if found is not None else f"no {expected.kind}"
                )
                sample.fields.update(
                    verified_by="value",
                    expected_answer=expected.shown(),
                    forward_answer=found.shown() if found is not None else None,
                )
            else:
                values = {"instruction": instruction, "output": output, "forward": forward}
                match, reason = await self._llm_verdict(sample, judge, values)
                sample.fields.update(verified_by="llm")
            sample.fields.update(verified=match, verifier_reason=reason)
            return sample if match else sample.reject("forward_result_does_not_match")

        return list(await asyncio.gather(*(attempt(Sample(), translate) for _ in range(self.attempts))))
