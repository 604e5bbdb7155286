"""ReverseGen: a proposer writes prompts meant to make a target model fail; the ones it fails on are kept.

After Jiang et al. (2025), "Forewarned is Forearmed: Leveraging LLMs for Data Synthesis through Failure-Inducing
Exploration" (ReverseGen): ``engines.proposer`` writes new instructions in the manner of a seed task, aiming at the
weaknesses of ``engines.target``; the target answers each; ``engines.judge`` decides whether the answer fails the
instruction. Failure-inducing instructions are the data (for training the target, or for rewarding the proposer);
the others go to rejected/ as ``target_succeeded``, and run.json reports the target's failure rate over every
instruction judged.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, render, role, string_list, user

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"failed": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 300}},
    "required": ["failed", "reason"],
}


class ReverseGen:
    """Args:
    prompts_per_seed: instructions the proposer writes per seed task.
    propose_prompt: ``{instruction}`` (the seed task) and ``{count}``; answered as {"instructions": [...]}.
    judge_prompt: ``{instruction}`` and ``{response}``; answered as {"failed": true|false, "reason": ...}.
    propose_sampling, target_sampling, judge_sampling: sampling per role.
    """

    name: ClassVar[str] = "reverse_gen"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "seed_instruction": pa.string(),
        "instruction": pa.string(),
        "response": pa.string(),
        "target_failed": pa.bool_(),
        "failure_reason": pa.string(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("instruction",)
    required_fields: ClassVar[tuple[str, ...]] = ("instruction",)
    tally_fields: ClassVar[tuple[str, ...]] = ("target_failed",)

    def __init__(
        self,
        propose_prompt: str,
        judge_prompt: str,
        prompts_per_seed: int = 3,
        propose_sampling: dict | None = None,
        target_sampling: dict | None = None,
        judge_sampling: dict | None = None,
    ) -> None:
        if prompts_per_seed < 1:
            raise ValueError(f"recipe.prompts_per_seed must be at least 1, got {prompts_per_seed}")
        self.propose_prompt, self.judge_prompt, self.count = propose_prompt, judge_prompt, prompts_per_seed
        self.propose_sampling = check_sampling(propose_sampling)
        self.target_sampling = check_sampling(target_sampling)
        self.judge_sampling = check_sampling(judge_sampling)

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        task = seed["instruction"].strip()
        proposing = Sample({"seed_instruction": task})
        try:
            value = await proposing.ask_json(
                role(engine, "proposer"),
                user(render(self.propose_prompt, instruction=task, count=self.count)),
                string_list("instructions", self.count),
                **self.propose_sampling,
            )
        except StepFailed as failed:
            return [proposing.fail(failed.stage, failed.error)]
        proposed = [i.strip() for i in value.get("instructions", []) if isinstance(i, str) and i.strip()]
        proposed = list(dict.fromkeys(proposed))[: self.count]
        if not proposed:
            return [proposing.fail("parse", f"the proposer wrote no instructions: {value!r}"[:300])]

        async def answer_and_judge(sample: Sample) -> Sample:
            instruction = sample.fields["instruction"]
            done = await sample.ask(role(engine, "target"), user(instruction), **self.target_sampling)
            sample.fields["response"] = done.text.strip()
            verdict = await sample.ask_json(
                role(engine, "judge"),
                user(render(self.judge_prompt, instruction=instruction, response=sample.fields["response"])),
                VERDICT_SCHEMA,
                **self.judge_sampling,
            )
            if not isinstance(verdict.get("failed"), bool):
                raise StepFailed("parse", f"the judge gave no verdict: {verdict!r}"[:300])
            sample.fields.update(target_failed=verdict["failed"], failure_reason=str(verdict.get("reason") or ""))
            return sample if verdict["failed"] else sample.reject("target_succeeded")

        samples = proposing.fan_out([{"instruction": i} for i in proposed])
        return list(await asyncio.gather(*(attempt(s, answer_and_judge) for s in samples)))

    @staticmethod
    def run_figures(tallies: Mapping[str, Mapping[str, int]], roles: Mapping[str, Any]) -> dict[str, Any]:
        """The share of judged instructions the target failed (kept and rejected rows alike)."""
        counts = tallies.get("target_failed") or {}
        judged = counts.get("True", 0) + counts.get("False", 0)
        return {"target_failure_rate": round(counts.get("True", 0) / judged, 4)} if judged else {}
