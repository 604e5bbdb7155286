"""Critique and revise: draft → critique → revision, emitted as a DPO preference pair.

After SYNFAC-EDIT (Mishra et al., 2024) and self-correction work: the revision, written with the critique in view,
is the ``chosen`` answer and the draft the ``rejected`` one.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.augment import format_instruction
from generation.recipes.base import Sample, attempt, render, user


class CritiqueRevise:
    """Args:
    draft_prompt: ``{instruction}``.
    critique_prompt: ``{instruction}``, ``{draft}``.
    revise_prompt: ``{instruction}``, ``{draft}``, ``{critique}``.
    sampling: sampling for every call.
    """

    name: ClassVar[str] = "critique_revise"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "instruction": pa.string(),
        "draft": pa.string(),
        "critique": pa.string(),
        "revision": pa.string(),
        "chosen": pa.string(),
        "rejected": pa.string(),
    }
    text_fields: ClassVar[tuple[str, ...]] = ("instruction", "revision")
    required_fields: ClassVar[tuple[str, ...]] = ("instruction",)

    def __init__(
        self, draft_prompt: str, critique_prompt: str, revise_prompt: str, sampling: dict | None = None
    ) -> None:
        self.draft_prompt, self.critique_prompt, self.revise_prompt = draft_prompt, critique_prompt, revise_prompt
        self.sampling = check_sampling(sampling)

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        instruction = format_instruction(seed)

        async def steps(sample: Sample) -> Sample:
            ask = self.sampling
            draft = (await sample.ask(engine, user(render(self.draft_prompt, instruction=instruction)), **ask)).text
            critique = (
                await sample.ask(
                    engine, user(render(self.critique_prompt, instruction=instruction, draft=draft)), **ask
                )
            ).text
            revision = (
                await sample.ask(
                    engine,
                    user(render(self.revise_prompt, instruction=instruction, draft=draft, critique=critique)),
                    **ask,
                )
            ).text
            draft, critique, revision = draft.strip(), critique.strip(), revision.strip()
            sample.fields.update(
                instruction=instruction,
                draft=draft,
                critique=critique,
                revision=revision,
                chosen=revision,
                rejected=draft,
            )
            if revision == draft:
                return sample.reject("revision_equals_draft")  # no preference signal in an unchanged pair
            return sample

        return [await attempt(Sample(), steps)]
