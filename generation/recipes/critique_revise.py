"""Critique and revise: the generator drafts, a critic critiques and edits, a judge compares edit and draft.

After SYNFAC-EDIT (Mishra et al., 2024): a stronger model (the ``critic`` role) edits a weaker model's draft to
fix what the source document does not support, and the edit/draft pair becomes preference data. The pair is kept
only when a judging call (the ``judge`` role, else the critic) prefers the edit in both answer orders; a tie or a
regression goes to rejected/ with the reason. Prompts are grounded in the seed's document (``document``, else
``input``) when it has one.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, attempt, render, role, user
from generation.recipes.judge import PAIR_SCHEMA, combine

# What the judge's combined verdict (A: the edit, B: the draft, asked in both orders) makes of the pair.
JUDGMENTS = {"A": "revision", "B": "draft", "tie": "tie"}


def grounding(document: str) -> str:
    return f"Source document:\n{document}\n\n" if document else ""


class CritiqueRevise:
    """Args:
    draft_prompt: ``{grounding}``, ``{instruction}``.
    critique_prompt: ``{grounding}``, ``{instruction}``, ``{draft}``.
    revise_prompt: ``{grounding}``, ``{instruction}``, ``{draft}``, ``{critique}``.
    compare_prompt: ``{grounding}``, ``{instruction}``, ``{answer_a}``, ``{answer_b}``; answers
        {"critique": ..., "winner": "A" | "B" | "tie"}.
    sampling: sampling for the draft, critique and revision.
    judge_sampling: sampling for the comparison (low temperature recommended).
    """

    name: ClassVar[str] = "critique_revise"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "instruction": pa.string(),
        "document": pa.string(),
        "draft": pa.string(),
        "critique": pa.string(),
        "revision": pa.string(),
        "chosen": pa.string(),
        "rejected": pa.string(),
        "judgment": pa.string(),
        "judge_verdicts": pa.list_(pa.string()),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("instruction", "revision")
    export_map: ClassVar[dict[str, str]] = {
        "prompt": "instruction",
        "response": "revision",
        "chosen": "chosen",
        "rejected": "rejected",
    }
    required_fields: ClassVar[tuple[str, ...]] = ("instruction",)
    balance_fields: ClassVar[tuple[str, ...]] = ("judgment",)

    def __init__(
        self,
        draft_prompt: str,
        critique_prompt: str,
        revise_prompt: str,
        compare_prompt: str,
        sampling: dict | None = None,
        judge_sampling: dict | None = None,
    ) -> None:
        self.draft_prompt, self.critique_prompt, self.revise_prompt = draft_prompt, critique_prompt, revise_prompt
        self.compare_prompt = compare_prompt
        self.sampling, self.judge_sampling = check_sampling(sampling), check_sampling(judge_sampling)

    async def _judge(self, sample: Sample, judge: EngineClient, values: dict[str, str]) -> list[str]:
        """The comparison of revision (A) and draft (B), asked in both orders; the verdicts as given."""
        orders = await asyncio.gather(
            *(
                sample.ask_json(
                    judge,
                    user(render(self.compare_prompt, **values, answer_a=x, answer_b=y)),
                    PAIR_SCHEMA,
                    **self.judge_sampling,
                )
                for x, y in ((values["revision"], values["draft"]), (values["draft"], values["revision"]))
            )
        )
        return [str(v.get("winner")) if isinstance(v, dict) else "?" for v in orders]

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        instruction = seed["instruction"].strip()
        document = str(seed.get("document") or seed.get("input") or "").strip()
        critic, judge = role(engine, "critic"), role(engine, "judge", "critic")

        async def steps(sample: Sample) -> Sample:
            values = {"grounding": grounding(document), "instruction": instruction}
            ask = self.sampling
            values["draft"] = (await sample.ask(engine, user(render(self.draft_prompt, **values)), **ask)).text.strip()
            critique = await sample.ask(critic, user(render(self.critique_prompt, **values)), **ask)
            values["critique"] = critique.text.strip()
            revision = await sample.ask(critic, user(render(self.revise_prompt, **values)), **ask)
            values["revision"] = revision.text.strip()
            sample.fields.update(
                instruction=instruction,
                document=document or None,
                draft=values["draft"],
                critique=values["critique"],
                revision=values["revision"],
                chosen=values["revision"],
                rejected=values["draft"],
            )
            if values["revision"] == values["draft"]:
                return sample.reject("revision_equals_draft")  # no preference signal in an unchanged pair
            verdicts = await self._judge(sample, judge, values)
            if any(v not in JUDGMENTS for v in verdicts):
                return sample.fail("parse", f"winner is not A, B or tie: {verdicts!r}")
            judgment = JUDGMENTS[combine(*verdicts)]
            sample.fields.update(judgment=judgment, judge_verdicts=verdicts)
            if judgment == "draft":  # the edit made it worse: the pair is kept the right way round, in rejected/
                sample.fields.update(chosen=values["draft"], rejected=values["revision"])
                return sample.reject("revision_worse_than_draft")
            if judgment == "tie":
                return sample.reject("judge_tie")
            return sample

        return [await attempt(Sample(), steps)]
