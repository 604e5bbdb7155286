"""Back-translation with rejection sampling: from a seed's output, write the instruction that asks for it; solve
that instruction forward; keep the pair only when a verifier says the forward answer matches the original output.

After OptMATH (Lu et al., 2025: back-translate solutions into problems, re-solve, reject mismatches) and
instruction back-translation (Li et al., 2023, "Self-Alignment with Instruction Backtranslation"). Rejected pairs
go to rejected/ with the verifier's reason.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, render, user

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"match": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["match"],
}


class BackTranslate:
    """Args:
    backward_prompt: ``{output}``: asks for the instruction whose answer is this output.
    forward_prompt: ``{instruction}``: solves the generated instruction.
    verify_prompt: ``{instruction}``, ``{output}``, ``{forward}``; answers {"match": bool, "reason": str}.
    attempts: backward translations tried per seed (each verified independently).
    sampling: sampling for the backward and forward calls (the verifier runs at temperature 0).
    """

    name: ClassVar[str] = "back_translate"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "instruction": pa.string(),
        "response": pa.string(),
        "forward_response": pa.string(),
        "verified": pa.bool_(),
        "verifier_reason": pa.string(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("instruction", "response")
    required_fields: ClassVar[tuple[str, ...]] = ("output",)

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

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        output = seed["output"].strip()

        async def translate(sample: Sample) -> Sample:
            instruction = (
                await sample.ask(engine, user(render(self.backward_prompt, output=output)), **self.sampling)
            ).text.strip()
            if not instruction:
                raise StepFailed("parse", "empty back-translated instruction")
            forward = (
                await sample.ask(engine, user(render(self.forward_prompt, instruction=instruction)), **self.sampling)
            ).text.strip()
            verdict = await sample.ask_json(
                engine,
                user(render(self.verify_prompt, instruction=instruction, output=output, forward=forward)),
                VERDICT_SCHEMA,
                **{**self.sampling, "temperature": 0.0},
            )
            match = bool(verdict.get("match")) if isinstance(verdict, dict) else False
            reason = str(verdict.get("reason", "")) if isinstance(verdict, dict) else ""
            sample.fields.update(
                instruction=instruction,
                response=output,
                forward_response=forward,
                verified=match,
                verifier_reason=reason,
            )
            return sample if match else sample.reject("forward_result_does_not_match")

        return list(await asyncio.gather(*(attempt(Sample(), translate) for _ in range(self.attempts))))
