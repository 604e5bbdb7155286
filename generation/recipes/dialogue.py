"""DiaSynth: topic → subtopics → personas → planned characteristics → a multi-turn dialogue.

Suresh et al., 2024, "DiaSynth: Synthetic Dialogue Generation Framework". Each step is a JSON-constrained call; one
dialogue per subtopic, stored as a ``messages`` list of {role, content} where role is the speaker's name.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any, ClassVar

import pyarrow as pa

from generation.engines import EngineClient, check_sampling
from generation.recipes.base import Sample, StepFailed, attempt, render, string_list, user

PERSONAS_SCHEMA = {
    "type": "object",
    "properties": {
        "personas": {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 40},
                    "description": {"type": "string", "maxLength": 120},
                },
                "required": ["name", "description"],
            },
        }
    },
    "required": ["personas"],
}
PLAN_SCHEMA = {
    "type": "object",
    "properties": {k: {"type": "string", "maxLength": 100} for k in ("setting", "tone", "goal")},
    "required": ["setting", "tone", "goal"],
}
DIALOGUE_SCHEMA = {
    "type": "object",
    "properties": {
        "turns": {
            "type": "array",
            "minItems": 2,
            "maxItems": 8,
            "items": {
                "type": "object",
                "properties": {
                    "speaker": {"type": "string", "minLength": 1, "maxLength": 40},
                    "text": {"type": "string", "maxLength": 200},
                },
                "required": ["speaker", "text"],
            },
        }
    },
    "required": ["turns"],
}
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])


class Dialogue:
    """Args:
    subtopics_per_topic: subtopics asked for; one dialogue each.
    turns: turns asked for in each dialogue.
    subtopic_prompt: ``{topic}``, ``{count}``.
    persona_prompt: ``{topic}``, ``{subtopic}``.
    plan_prompt: ``{subtopic}``, ``{personas}``.
    dialogue_prompt: ``{subtopic}``, ``{personas}``, ``{plan}``, ``{turns}``.
    sampling: sampling for every call.
    """

    name: ClassVar[str] = "dialogue"
    columns: ClassVar[dict[str, pa.DataType]] = {
        "topic": pa.string(),
        "subtopic": pa.string(),
        "personas": pa.list_(pa.string()),
        "plan": pa.string(),
        "messages": pa.list_(MESSAGE),
    }
    # Filters and quality figures read the conversation (its turns' contents joined by newlines), not its topic.
    text_fields: ClassVar[tuple[str, ...]] = ("messages",)
    export_map: ClassVar[dict[str, str]] = {"messages": "messages"}
    required_fields: ClassVar[tuple[str, ...]] = ("topic",)

    def __init__(
        self,
        subtopic_prompt: str,
        persona_prompt: str,
        plan_prompt: str,
        dialogue_prompt: str,
        subtopics_per_topic: int = 2,
        turns: int = 6,
        sampling: dict | None = None,
    ) -> None:
        self.subtopic_prompt, self.persona_prompt = subtopic_prompt, persona_prompt
        self.plan_prompt, self.dialogue_prompt = plan_prompt, dialogue_prompt
        self.count, self.turns = subtopics_per_topic, turns
        self.sampling = check_sampling(sampling)

    async def run(self, seed: dict[str, Any], engine: EngineClient, rng: random.Random) -> list[Sample]:
        topic = seed["topic"].strip()
        first = Sample({"topic": topic})
        try:
            value = await first.ask_json(
                engine,
                user(render(self.subtopic_prompt, topic=topic, count=self.count)),
                string_list("subtopics", self.count),
                **self.sampling,
            )
        except StepFailed as failed:
            return [first.fail(failed.stage, failed.error)]
        subtopics = [s.strip() for s in value.get("subtopics", []) if isinstance(s, str) and s.strip()][: self.count]
        if not subtopics:
            return [first.fail("parse", f"no subtopics in {value!r}"[:300])]
        samples = first.fan_out([{"subtopic": s} for s in subtopics])

        async def converse(sample: Sample) -> Sample:
            subtopic = sample.fields["subtopic"]
            people = await sample.ask_json(
                engine,
                user(render(self.persona_prompt, topic=topic, subtopic=subtopic)),
                PERSONAS_SCHEMA,
                **self.sampling,
            )
            personas = [p for p in people.get("personas", []) if isinstance(p, dict) and p.get("name")][:2]
            if len(personas) < 2:
                raise StepFailed("parse", f"need two personas, got {people!r}"[:300])
            described = "; ".join(f"{p['name']}: {p.get('description', '')}" for p in personas)
            plan = await sample.ask_json(
                engine,
                user(render(self.plan_prompt, subtopic=subtopic, personas=described)),
                PLAN_SCHEMA,
                **self.sampling,
            )
            plan_text = json.dumps(plan, ensure_ascii=False)
            talk = await sample.ask_json(
                engine,
                user(
                    render(
                        self.dialogue_prompt, subtopic=subtopic, personas=described, plan=plan_text, turns=self.turns
                    )
                ),
                DIALOGUE_SCHEMA,
                **self.sampling,
            )
            messages = [
                {"role": str(t.get("speaker", "")).strip(), "content": str(t.get("text", "")).strip()}
                for t in talk.get("turns", [])
                if isinstance(t, dict) and str(t.get("text", "")).strip()
            ]
            if len(messages) < 2:
                raise StepFailed("parse", f"dialogue has fewer than 2 turns: {talk!r}"[:300])
            sample.fields.update(
                personas=[f"{p['name']}: {p.get('description', '')}" for p in personas],
                plan=plan_text,
                messages=messages,
            )
            return sample

        return list(await asyncio.gather(*(attempt(s, converse) for s in samples)))
